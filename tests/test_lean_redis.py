"""The lean path's pipelined Redis connection, against the real Redis: replies in order, redis-py's errors."""

import asyncio
import socket

import pytest
from django.conf import settings
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from flashsale.lean_redis import LeanRedis
from flashsale.redis import redis_client


@pytest.fixture
def key(redis_prefix):
    return f"{redis_prefix}:lean"


def run(coro):
    return asyncio.run(coro)


def test_many_calls_in_flight_on_one_connection_each_get_their_own_reply(key):
    lean = LeanRedis(settings.REDIS_URL, timeout=5)

    async def scenario():
        # 2,000 increments and reads at once, interleaved on one socket
        incrs = [lean.execute_command("INCR", key) for _ in range(1000)]
        echoes = [lean.execute_command("ECHO", f"call-{i}") for i in range(1000)]
        return await asyncio.gather(*incrs, *echoes)

    replies = run(scenario())

    assert sorted(replies[:1000]) == list(range(1, 1001))  # every increment answered once
    assert replies[1000:] == [f"call-{i}".encode() for i in range(1000)]  # each caller got its own reply
    assert int(redis_client().get(key)) == 1000


def test_it_uses_the_database_of_the_url(key):
    lean = LeanRedis(settings.REDIS_URL, timeout=5)

    run(lean.execute_command("SET", key, "from-lean"))

    assert redis_client().get(key) == b"from-lean"  # django-redis's client, same URL, same database


def test_errors_are_redis_pys(key):
    lean = LeanRedis(settings.REDIS_URL, timeout=5)

    async def scenario():
        with pytest.raises(NoScriptError):
            await lean.execute_command("EVALSHA", "0" * 40, 0)
        with pytest.raises(ResponseError):
            await lean.execute_command("INCR", key, "too", "many")
        # the connection goes on answering after an error
        sha = await lean.script_load("return ARGV[1]")
        return await lean.execute_command("EVALSHA", sha, 0, "after")

    assert run(scenario()) == b"after"


def test_a_killed_connection_fails_its_callers_and_the_next_call_reconnects(key):
    lean = LeanRedis(settings.REDIS_URL, timeout=5)

    async def scenario():
        await lean.execute_command("SET", key, "1")
        client_id = await lean.execute_command("CLIENT", "ID")
        redis_client().execute_command("CLIENT", "KILL", "ID", client_id)
        await asyncio.sleep(0.1)
        return await lean.execute_command("GET", key)

    assert run(scenario()) == b"1"


def test_a_redis_that_does_not_answer_times_out_and_one_that_is_not_there_cannot_connect():
    with socket.socket() as silent:  # accepts connections and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        lean = LeanRedis(f"redis://127.0.0.1:{port}/0", timeout=0.3)
        with pytest.raises(RedisTimeoutError):
            run(lean.execute_command("PING"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(RedisConnectionError):
        run(LeanRedis(f"redis://127.0.0.1:{port}/0", timeout=1).execute_command("PING"))


def test_a_call_whose_reply_is_overdue_fails_and_the_late_reply_goes_to_nobody_else():
    async def scenario():
        commands = asyncio.Queue()

        async def slow_redis(reader, writer):  # answers the first command late, then the rest at once
            replies = [b"+late\r\n", b"+second\r\n", b"+third\r\n"]
            while (line := await reader.readline()) and replies:
                if line.startswith(b"*"):  # one command (PING: *1, $4, PING)
                    await reader.readline(), await reader.readline()
                    await commands.put(None)
                    if len(replies) == 3:
                        await asyncio.sleep(0.35)
                    writer.write(replies.pop(0))
            writer.close()

        server = await asyncio.start_server(slow_redis, "127.0.0.1", 0)
        lean = LeanRedis(f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}/0", timeout=0.3)
        first = asyncio.create_task(lean.execute_command("PING"))
        await asyncio.sleep(0.2)
        second = asyncio.create_task(lean.execute_command("PING"))  # due at 0.5 s, answered at 0.35
        answers = await asyncio.gather(first, second, return_exceptions=True)
        third = await lean.execute_command("PING")
        server.close()
        return answers, third

    (first, second), third = run(scenario())
    assert isinstance(first, RedisTimeoutError)  # at 0.3 s, before its reply came at 0.35
    # The late reply to the first call is dropped in order: the second call gets its own
    assert second == b"second"
    assert third == b"third"


def test_only_plain_redis_urls_are_taken():
    with pytest.raises(ValueError, match="rediss"):
        LeanRedis("rediss://example.com:6380/0", timeout=1)
