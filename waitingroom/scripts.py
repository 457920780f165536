"""The waiting room's Lua scripts and their return codes (registered once per process)."""

from __future__ import annotations

import enum
from pathlib import Path

from redis.commands.core import Script

from flashsale.lua import registered_script

LUA_DIR = Path(__file__).resolve().parent / "lua"


class JoinResult(enum.IntEnum):
    TICKETED = 1
    PREQUEUED = 2
    EXISTING = 3
    AUTHORIZATION_REQUIRED = 4
    SOLD_OUT = 5
    POW_REPLAYED = 6
    DEVICE_LIMIT = 7
    PARKED = 8
    CARD_LIMIT = 9


class StartResult(enum.IntEnum):
    STARTED = 1
    ALREADY_STARTED = 2
    CHANGED = 3


class ReleaseResult(enum.IntEnum):
    RELEASED = 1
    NOT_PARKED = 2


class FinishResult(enum.IntEnum):
    FINISHED = 1
    NOT_ADMITTED = 2


def lua_script(name: str) -> Script:
    """Return the registered script ``lua/<name>.lua`` (see ``flashsale.lua``)."""
    return registered_script(LUA_DIR / f"{name}.lua")
