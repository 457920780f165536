"""What the lean join path pays for a Redis Cluster: its pipelined single-connection client (flashsale.lean_redis)
on one Redis against redis-py's asyncio cluster client (which follows MOVED/ASK) on a cluster, in one process.

Usage: .venv/bin/python bench/lean_cluster.py [--calls 20000] [--concurrency 64] [--rounds 3]
       (a cluster must answer on 127.0.0.1:7000: python scripts/redis_cluster.py up)

Each call is an EVALSHA of a small script on two keys of one drop's hash tag (as the join and entry scripts
are), ``--concurrency`` in flight from one asyncio loop. Reported per client: calls per second and the
process's CPU microseconds per call (time.process_time), the median of the rounds; the single Redis with
the lean client is the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from flashsale.lean_redis import LeanRedis

SCRIPT = "redis.call('HINCRBY', KEYS[1], ARGV[1], 1) return redis.call('HGET', KEYS[2], ARGV[1])"
KEYS = ("benchlean:{drop:1}:a", "benchlean:{drop:1}:b")


async def rounds(client, calls: int, concurrency: int, count: int) -> tuple[float, float]:
    sha = await client.script_load(SCRIPT)
    rates, cpu = [], []
    for _ in range(count):
        gate = asyncio.Semaphore(concurrency)

        async def one(n: int, gate: asyncio.Semaphore = gate) -> None:
            async with gate:
                await client.execute_command("EVALSHA", sha, 2, *KEYS, n % 1000)

        started, cpu_started = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one(n) for n in range(calls)))
        rates.append(calls / (time.perf_counter() - started))
        cpu.append(1e6 * (time.process_time() - cpu_started) / calls)
    await client.execute_command("DEL", *KEYS)
    return statistics.median(rates), statistics.median(cpu)


async def main_async(args) -> None:
    clients = {
        "lean client, one Redis (baseline)": lambda: LeanRedis("redis://127.0.0.1:6379/12", timeout=5),
        "redis-py asyncio, one Redis": lambda: Redis.from_url("redis://127.0.0.1:6379/12", max_connections=1000),
        "redis-py asyncio cluster, Redis Cluster": lambda: RedisCluster.from_url("redis://127.0.0.1:7000/0"),
    }
    results = {}
    for name, make in clients.items():
        client = make()
        results[name] = await rounds(client, args.calls, args.concurrency, args.rounds)
        close = getattr(client, "aclose", None)
        if close is not None:
            await close()
    base_rate, base_cpu = next(iter(results.values()))
    print("| Client | calls/s | ratio | CPU µs per call | ratio |\n| --- | --- | --- | --- | --- |")
    for name, (rate, cpu) in results.items():
        print(f"| {name} | {rate:,.0f} | {rate / base_rate:.2f} | {cpu:.0f} | {cpu / base_cpu:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
