"""A pipelined asyncio Redis connection for the queue's lean path: one per process and event loop.

redis-py's asyncio client costs a join more than the rest of the lean path together: it packs
commands in Python, takes and returns a pooled connection, and wraps every write in
``asyncio.wait_for`` (a task per call). Here every caller shares one connection: a command is
packed by hiredis and written with the others of the same loop iteration (one system call for
all the joins that reached Redis together), its reply is matched by order (Redis answers in the order
it was asked) and parsed by hiredis as it arrives. Many joins in flight become one stream of
commands on one socket, which Redis also serves with fewer reads. One timer per connection,
not one per call, fails the calls whose reply is overdue.

Failures look like redis-py's (``ConnectionError``, ``ResponseError``, ``NoScriptError``,
``TimeoutError``), so the lean path treats them as it did: a request whose Redis call fails is
handed to Django. A lost connection fails the calls waiting on it and the next call reconnects;
a call waits at most ``REDIS_SOCKET_TIMEOUT`` for its reply.
"""

from __future__ import annotations

import asyncio
import collections
from functools import partial
from urllib.parse import unquote, urlsplit

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

SCHEMES = ("redis", "unix")


class _Protocol(asyncio.Protocol):
    def __init__(self, timeout: float) -> None:
        self.reader = hiredis.Reader()
        # Calls in the order they were sent, each with the loop time by which its reply is due.
        self.waiting: collections.deque[tuple[asyncio.Future, float]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.outgoing: list[bytes] = []  # commands of this loop iteration, written together
        self.timeout = timeout
        self.watchdog: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            future, _due = self.waiting.popleft()
            if not future.done():  # a caller that timed out has gone; its reply is dropped in order
                future.set_result(reply)

    def connection_lost(self, exc) -> None:
        self.lost = True
        if self.watchdog is not None:
            self.watchdog.cancel()
        while self.waiting:
            future, _due = self.waiting.popleft()
            if not future.done():
                future.set_exception(RedisConnectionError(f"Redis connection lost: {exc or 'closed'}"))

    def send(self, args: tuple) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.waiting.append((future, loop.time() + self.timeout))
        if self.watchdog is None:
            self.watchdog = loop.call_later(self.timeout, self._overdue)
        if not self.outgoing:
            loop.call_soon(self._flush)
        self.outgoing.append(hiredis.pack_command(args))
        return future

    def _overdue(self) -> None:
        """Fail the calls whose reply is overdue (they stay in line: their replies, if they come, are
        dropped in order), then wait for the next one's due time."""
        self.watchdog = None
        now = asyncio.get_running_loop().time()
        for future, due in self.waiting:
            if due > now:
                self.watchdog = asyncio.get_running_loop().call_at(due, self._overdue)
                return
            if not future.done():
                future.set_exception(RedisTimeoutError(f"no reply from Redis within {self.timeout} s"))

    def _flush(self) -> None:
        """Write every command asked for since the last flush in one system call."""
        data, self.outgoing = b"".join(self.outgoing), []
        if not self.lost:
            self.transport.write(data)


class LeanRedis:
    """One pipelined connection to the Redis at ``url`` (redis:// or unix://), opened on first use."""

    def __init__(self, url: str, *, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES:
            raise ValueError(f"LeanRedis takes {' or '.join(SCHEMES)} URLs, not {parts.scheme}://")
        self.unix_path = parts.path if parts.scheme == "unix" else None
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 6379
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        query = dict(pair.split("=", 1) for pair in parts.query.split("&") if "=" in pair)
        self.db = int(query.get("db") or (parts.path.lstrip("/") if parts.scheme == "redis" else "") or 0)
        self.timeout = timeout
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None

    async def execute_command(self, *args):
        """Send one command and return its reply (bytes, int, list...), as redis-py does undecoded."""
        protocol = self._protocol
        if protocol is None or protocol.lost:
            protocol = await self._connect()
        reply = await protocol.send(args)  # raises RedisTimeoutError when the reply is overdue
        if isinstance(reply, hiredis.ReplyError):
            message = str(reply)
            raise (NoScriptError if message.startswith("NOSCRIPT") else ResponseError)(message)
        return reply

    async def script_load(self, source: str) -> str:
        sha = await self.execute_command("SCRIPT", "LOAD", source)
        return sha.decode()

    async def _connect(self) -> _Protocol:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._protocol is not None and not self._protocol.lost:
                return self._protocol  # another caller connected while this one waited
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(self.timeout):
                    factory = partial(_Protocol, self.timeout)
                    if self.unix_path:
                        _, protocol = await loop.create_unix_connection(factory, self.unix_path)
                    else:
                        _, protocol = await loop.create_connection(factory, self.host, self.port)
                    if self.password:
                        auth = (self.username, self.password) if self.username else (self.password,)
                        _check(await protocol.send(("AUTH", *auth)))
                    if self.db:
                        _check(await protocol.send(("SELECT", self.db)))
            except (OSError, TimeoutError) as exc:
                raise RedisConnectionError(f"cannot connect to Redis: {exc}") from exc
            self._protocol = protocol
            return protocol


def _check(reply) -> None:
    if isinstance(reply, hiredis.ReplyError):
        raise RedisConnectionError(f"Redis refused the connection: {reply}")
