"""The inventory's Lua scripts: each registered once per process, return codes as Enums.

redis-py's ``Script`` runs EVALSHA and, on NOSCRIPT (a Redis that restarted or was
flushed), loads the script and tries once more, so callers never see that error.
"""

from __future__ import annotations

import enum
from pathlib import Path

from redis.commands.core import Script

from flashsale.lua import registered_script

LUA_DIR = Path(__file__).resolve().parent / "lua"


class ArmResult(enum.IntEnum):
    ARMED = 1
    ALREADY_ARMED = 2
    FOREIGN = 3


class AdjustResult(enum.IntEnum):
    ADJUSTED = 1
    NOT_ARMED = 2
    BELOW_TAKEN = 3


class ClaimResult(enum.IntEnum):
    CLAIMED = 1
    SOLD_OUT = 2
    LIMIT_REACHED = 3
    INSUFFICIENT = 4
    NOT_ARMED = 5
    DUPLICATE_CLAIM = 6


class CommitResult(enum.IntEnum):
    COMMITTED = 1
    ALREADY_COMMITTED = 2
    RETAKEN = 3
    LOST = 4


class ReleaseResult(enum.IntEnum):
    RELEASED = 1
    NOT_HELD = 2


def lua_script(name: str) -> Script:
    """Return the registered script ``lua/<name>.lua`` (see ``flashsale.lua``)."""
    return registered_script(LUA_DIR / f"{name}.lua")
