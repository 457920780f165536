"""Lua scripts, read and registered once per process (each app keeps its own in ``<app>/lua/``).

redis-py's ``Script`` runs EVALSHA and, on NOSCRIPT (a Redis that restarted or was flushed),
loads the script and tries once more, so callers never see that error.
"""

from functools import cache
from pathlib import Path

from redis.commands.core import Script

from flashsale.redis import redis_client


@cache
def lua_source(path: Path) -> str:
    return path.read_text()


@cache
def registered_script(path: Path) -> Script:
    """Return the script at ``path``, registered once per process; pass ``client=`` when calling it."""
    return redis_client().register_script(lua_source(path))
