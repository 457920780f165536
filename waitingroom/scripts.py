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
    UNAVAILABLE = 10


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


class HoldState:
    """The card hold states the queue keeps per shopper (``QueueKeys.holds``); ``tick.lua`` reads them.

    ``s`` the card is given and its hold is still to be placed; ``p:<ms>`` it is being placed (since);
    ``r`` it is placed (ready to admit); ``f:<ms>:<code>`` payment is required (since; why).
    """

    SCHEDULED = "s"
    READY = "r"

    @staticmethod
    def placing(now_ms: int) -> str:
        return f"p:{now_ms}"

    @staticmethod
    def failed(now_ms: int, code: str) -> str:
        return f"f:{now_ms}:{code}"

    @staticmethod
    def failure(state: str) -> str | None:
        """The decline code of a ``payment required`` state, else None."""
        return state.split(":", 2)[2] if state.startswith("f:") else None

    @staticmethod
    def placing_since(state: str) -> int | None:
        return int(state[2:]) if state.startswith("p:") else None


def lua_script(name: str) -> Script:
    """Return the registered script ``lua/<name>.lua`` (see ``flashsale.lua``)."""
    return registered_script(LUA_DIR / f"{name}.lua")
