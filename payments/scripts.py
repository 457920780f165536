"""The payments' Lua scripts: each registered once per process, return codes as Enums."""

from __future__ import annotations

import enum
from functools import cache
from pathlib import Path

from redis.commands.core import Script

from flashsale.redis import redis_client

LUA_DIR = Path(__file__).resolve().parent / "lua"


class BucketResult(enum.IntEnum):
    GRANTED = 1
    DENIED = 2


@cache
def lua_script(name: str) -> Script:
    """Return the registered script ``lua/<name>.lua`` (read and hashed once per process)."""
    source = (LUA_DIR / f"{name}.lua").read_text()
    return redis_client().register_script(source)
