"""Live updates across web nodes: a separate plain Redis's PUBLISH/SUBSCRIBE (what the project does, PUBSUB_URL)
against Redis Cluster's sharded pub/sub (SPUBLISH/SSUBSCRIBE on the drop's hash slot), measured rather than argued.

Usage: .venv/bin/python bench/pubsub_cluster.py [--messages 10000] [--rate 2000] [--subscribers 2 4]
                                                [--rounds 3] [--port 7300] [--json FILE]

The ticker publishes one drop frame a second plus one entry message per admitted shopper (bursts of a few
hundred a second), ~300-byte JSON, and every web node holds one subscriber connection. Here one publisher
sends ``--messages`` such payloads on the channel ``fs:{drop:1}:ws``, one command per round trip as
``waitingroom/realtime.py`` does, flat out and paced at ``--rate`` a second, to 2 and 4 subscribers (web
nodes), each a separate process (multiprocessing) so that no GIL sits between the send and the receipt (one
exact channel for both: the project's hub PSUBSCRIBEs to a pattern, which sharded pub/sub does not have):

- plain: ``redis-server`` started for the run (no replica, nothing on disk), redis-py ``Redis.publish`` and
  ``PubSub.subscribe``;
- sharded: a Redis Cluster of 3 primaries + 3 replicas (``scripts/redis_cluster.py``, ports ``--port`` ..
  ``--port``+5), redis-py ``RedisCluster.spublish`` and ``RedisCluster.pubsub().ssubscribe`` (the
  ``ClusterPubSub`` connects to the primary owning the channel's slot).

Reported per variant, the median of ``--rounds`` rounds (each figure's own median; the two variants run back
to back, in turn first): publisher messages a second, delivery latency p50/p99 (each payload carries its
CLOCK_MONOTONIC send time; all subscribers' receipts pooled), messages lost (``--messages`` x subscribers
minus distinct ones received), publisher client CPU per message, and Redis server CPU per 10,000 messages
(``INFO cpu`` used_cpu_user + used_cpu_sys, before and after, less each server's idle rate measured
beforehand): the plain Redis, or the cluster's primary owning the slot, its replica (Redis 7 propagates
SPUBLISH to the shard's replicas) and the 4 other nodes together. Everything, the servers included, shares
this machine's cores with the load generator (and with whatever else runs), so the absolute figures are a
floor; the comparison is what carries over.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from multiprocessing.synchronize import Event
from pathlib import Path

import redis
from redis.cluster import RedisCluster

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "bench"))
import redis_cluster  # noqa: E402
from stack import free_port, port_open  # noqa: E402

CHANNEL = "fs:{drop:1}:ws"
PAYLOAD_BYTES = 300
IDLE_SECONDS = 5.0  # how long each server's idle CPU rate is sampled
QUIET_SECONDS = 2.0  # a subscriber gives up this long after the publisher is done and nothing more came
VARIANTS = ("plain", "sharded")


@dataclass
class Servers:
    plain_port: int
    owner: int  # the cluster primary owning CHANNEL's slot
    replica: int
    others: list[int]
    idle_rate: dict[int, float] = field(default_factory=dict)  # CPU-seconds a second, per port


@dataclass
class Run:
    variant: str
    subscribers: int
    mode: str
    publish_rate: float
    p50_ms: float
    p99_ms: float
    lost: int
    publisher_cpu_us: float
    server_cpu: dict[str, float]  # per 10,000 messages


def payload(seq: int) -> str:
    """An entry message of about PAYLOAD_BYTES, its send time inside."""
    message = {
        "type": "entry",
        "drop": 1,
        "seq": seq,
        "sent_ns": time.monotonic_ns(),
        "shopper": 100_000 + seq,
        "state": "admitted",
        "position": 0,
        "expires_at": "2025-01-01T12:00:00+00:00",
        "pad": "",
    }
    message["pad"] = "x" * max(0, PAYLOAD_BYTES - len(json.dumps(message)))
    return json.dumps(message)


def subscriber(variant: str, port: int, expected: int, done: Event, results: mp.Queue) -> None:
    """One web node: receive until every message came, or the publisher is done and the channel stays quiet."""
    if variant == "plain":
        pubsub = redis.Redis(port=port).pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(CHANNEL)
        kind = "message"

        def receive() -> dict | None:
            return pubsub.get_message(timeout=1.0)
    else:
        pubsub = RedisCluster(host="127.0.0.1", port=port).pubsub()
        pubsub.ssubscribe(CHANNEL)
        kind = "smessage"

        def receive() -> dict | None:
            return pubsub.get_sharded_message(ignore_subscribe_messages=True, timeout=1.0)

    seen: set[int] = set()
    latencies: list[int] = []
    quiet_since = None
    while len(seen) < expected:
        message = receive()
        now = time.monotonic_ns()
        if message is None or message["type"] != kind:
            if done.is_set():
                quiet_since = quiet_since or now
                if now - quiet_since > QUIET_SECONDS * 1e9:
                    break
            continue
        quiet_since = None
        data = json.loads(message["data"])
        latencies.append(now - data["sent_ns"])
        seen.add(data["seq"])
    results.put((len(seen), latencies))
    pubsub.close()


def cpu(port: int) -> float:
    info = redis.Redis(port=port).info("cpu")
    return info["used_cpu_user"] + info["used_cpu_sys"]


def idle_rates(ports: list[int]) -> dict[int, float]:
    before = {port: cpu(port) for port in ports}
    time.sleep(IDLE_SECONDS)
    return {port: (cpu(port) - before[port]) / IDLE_SECONDS for port in ports}


def subscribed(variant: str, servers: Servers) -> int:
    if variant == "plain":
        return redis.Redis(port=servers.plain_port).pubsub_numsub(CHANNEL)[0][1]
    return redis.Redis(port=servers.owner).pubsub_shardnumsub(CHANNEL)[0][1]


def wait_subscribed(variant: str, servers: Servers, count: int) -> None:
    deadline = time.monotonic() + 20
    while subscribed(variant, servers) != count:
        if time.monotonic() > deadline:
            sys.exit(f"pubsub_cluster: {variant} never had {count} subscribers")
        time.sleep(0.05)


def percentile(sorted_values: list[int], pct: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * pct / 100))] if sorted_values else 0


def one_run(
    variant: str,
    count: int,
    rate: float | None,
    args: argparse.Namespace,
    servers: Servers,
    publisher: redis.Redis | RedisCluster,
) -> Run:
    wait_subscribed(variant, servers, 0)  # the last run's subscribers are gone
    port = servers.plain_port if variant == "plain" else servers.owner
    done, results = mp.Event(), mp.Queue()
    processes = [
        mp.Process(target=subscriber, args=(variant, port, args.messages, done, results)) for _ in range(count)
    ]
    for process in processes:
        process.start()
    wait_subscribed(variant, servers, count)
    watched = [servers.plain_port] if variant == "plain" else [servers.owner, servers.replica, *servers.others]
    cpu_before = {p: cpu(p) for p in watched}
    send = publisher.publish if variant == "plain" else publisher.spublish
    started, client_started = time.monotonic(), time.process_time()
    for seq in range(args.messages):
        if rate:
            time.sleep(max(0.0, started + seq / rate - time.monotonic()))
        send(CHANNEL, payload(seq))
    published, client_cpu = time.monotonic() - started, time.process_time() - client_started
    done.set()
    received = [results.get(timeout=600) for _ in processes]
    window = time.monotonic() - started
    spent = {p: cpu(p) - cpu_before[p] - servers.idle_rate[p] * window for p in watched}
    for process in processes:
        process.join()
    latencies = sorted(x for _, lat in received for x in lat)
    per_10k = 1000 * 10_000 / args.messages  # CPU-seconds -> ms per 10,000 messages
    if variant == "plain":
        server_cpu = {"server": spent[servers.plain_port] * per_10k}
    else:
        server_cpu = {
            "server": spent[servers.owner] * per_10k,
            "replica": spent[servers.replica] * per_10k,
            "others": sum(spent[p] for p in servers.others) * per_10k,
        }
    return Run(
        variant,
        count,
        f"paced {rate:,.0f}/s" if rate else "flat out",
        args.messages / published,
        percentile(latencies, 50) / 1e6,
        percentile(latencies, 99) / 1e6,
        args.messages * count - sum(n for n, _ in received),
        1e6 * client_cpu / args.messages,
        server_cpu,
    )


def median_run(runs: list[Run]) -> Run:
    first = runs[0]
    return Run(
        first.variant,
        first.subscribers,
        first.mode,
        *(
            statistics.median(getattr(r, name) for r in runs)
            for name in ("publish_rate", "p50_ms", "p99_ms", "lost", "publisher_cpu_us")
        ),
        {key: statistics.median(r.server_cpu[key] for r in runs) for key in first.server_cpu},
    )


def cluster_shard(port: int) -> tuple[int, int, list[int]]:
    """The primary owning CHANNEL's slot, its replica and the other nodes (CLUSTER KEYSLOT, CLUSTER NODES)."""
    slot = int(redis_cluster.cli(port, "cluster", "keyslot", CHANNEL))
    nodes = [line.split() for line in redis_cluster.cli(port, "cluster", "nodes").splitlines() if line.strip()]
    node_port = {n[0]: int(n[1].split("@")[0].rsplit(":", 1)[1]) for n in nodes}

    def owns(node: list[str]) -> bool:
        ranges = [r.split("-") for r in node[8:] if not r.startswith("[")]
        return any(int(r[0]) <= slot <= int(r[-1]) for r in ranges)

    owner = next(n[0] for n in nodes if "master" in n[2].split(",") and owns(n))
    replica = next(n[0] for n in nodes if n[3] == owner)
    return node_port[owner], node_port[replica], [p for i, p in node_port.items() if i not in (owner, replica)]


def command() -> str:
    return shlex.join([".venv/bin/python", "bench/pubsub_cluster.py", *sys.argv[1:]])


def facts(servers: Servers, load_at_start: str) -> list[tuple[str, str]]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    server = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.strip()
    versions = {redis.Redis(port=p).info("server")["redis_version"] for p in (servers.plain_port, servers.owner)}
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return [
        (
            "CPU",
            f"{model}, nproc {os.cpu_count()} (Redis servers, publisher and subscribers share them, and this "
            "machine also runs other benchmarks)",
        ),
        ("Load average", f"{load_at_start} at the start, {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end"),
        ("Redis", f"{server} (INFO redis_version {', '.join(sorted(versions))})"),
        ("Client", f"redis-py {metadata.version('redis')}, Python {platform.python_version()}"),
        ("Date", time.strftime("%Y-%m-%d %H:%M %Z")),
        ("Commit", commit.stdout.strip()),
    ]


def report(args: argparse.Namespace, runs: list[Run], machine: list[tuple[str, str]], servers: Servers) -> str:
    idle = [1000 * rate for rate in servers.idle_rate.values()]
    lines = ["Machine:", ""] + [f"- {name}: {value}" for name, value in machine]
    lines += [
        "",
        "Command:",
        "",
        "```",
        command(),
        "```",
        "",
        f"{args.messages:,} messages of ~{PAYLOAD_BYTES} bytes per run, median of {args.rounds} rounds; "
        "server CPU in ms per 10,000 messages, each server's idle CPU subtracted (sampled over "
        f"{IDLE_SECONDS:.0f} s before the rounds: {min(idle):.1f}-{max(idle):.1f} ms/s per server, so a run of a "
        "few seconds carries a few ms of noise per server).",
        "",
        "| Variant | Subscribers | Publishing | msgs/s | p50 ms | p99 ms | lost | publisher CPU µs/msg | "
        "server CPU (plain / slot's primary) | slot's replica | other 4 nodes (sum) |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    names = {"plain": "plain PUBLISH", "sharded": "cluster SPUBLISH"}
    for r in runs:
        extra = r.server_cpu.get("replica"), r.server_cpu.get("others")
        lines.append(
            f"| {names[r.variant]} | {r.subscribers} | {r.mode} | {r.publish_rate:,.0f} | {r.p50_ms:.2f} | "
            f"{r.p99_ms:.2f} | {r.lost:,.0f} | {r.publisher_cpu_us:.0f} | {round(r.server_cpu['server'])} | "
            + " | ".join("-" if x is None else str(round(x)) for x in extra)
            + " |"
        )
    return "\n".join(lines)


def start_plain(folder: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir",
         str(folder)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while not port_open(port):
        if time.monotonic() > deadline:
            sys.exit("pubsub_cluster: the plain redis-server did not start")
        time.sleep(0.05)
    return server, port


def bench(args: argparse.Namespace, servers: Servers) -> tuple[list[Run], list[Run]]:
    """Every run, and the median of each variant's rounds."""
    publishers = {
        "plain": redis.Redis(port=servers.plain_port),
        "sharded": RedisCluster(host="127.0.0.1", port=args.port),
    }
    watched = [servers.plain_port, servers.owner, servers.replica, *servers.others]
    servers.idle_rate = idle_rates(watched)
    rounds: dict[tuple[str, int, str], list[Run]] = {}
    for number in range(args.rounds):
        for count in args.subscribers:
            for rate in (None, args.rate):
                for variant in VARIANTS if number % 2 == 0 else VARIANTS[::-1]:
                    run = one_run(variant, count, rate, args, servers, publishers[variant])
                    rounds.setdefault((variant, count, run.mode), []).append(run)
                    print(
                        f"[{time.strftime('%H:%M:%S')}] round {number + 1}: {variant}, {count} subscribers, "
                        f"{run.mode}: {run.publish_rate:,.0f} msgs/s, p99 {run.p99_ms:.2f} ms, lost {run.lost}",
                        file=sys.stderr,
                        flush=True,
                    )
    ordered = sorted(rounds.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0]))
    return [run for _, runs in ordered for run in runs], [median_run(runs) for _, runs in ordered]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=10_000, help="messages published per run")
    parser.add_argument("--rate", type=float, default=2000, help="messages a second of the paced runs")
    parser.add_argument("--subscribers", type=int, nargs="+", default=[2, 4], help="subscriber processes (web nodes)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each variant; the median is reported")
    parser.add_argument("--port", type=int, default=7300, help="the cluster's first port (it takes 6)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if any(port_open(p) for p in range(args.port, args.port + redis_cluster.NODES)):
        sys.exit(f"pubsub_cluster: ports {args.port}..{args.port + 5} are in use; pick another --port")
    load_at_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    folder = Path(tempfile.mkdtemp(prefix="flashsale-bench-pubsub-"))
    plain = None
    try:
        redis_cluster.up(args.port, folder / "cluster")
        plain, plain_port = start_plain(folder)
        servers = Servers(plain_port, *cluster_shard(args.port))
        every, runs = bench(args, servers)
        machine = facts(servers, load_at_start)
    finally:
        redis_cluster.down(args.port, folder / "cluster")
        if plain is not None:
            plain.terminate()
            plain.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)
    print(report(args, runs, machine, servers))
    if args.json:
        figures = {
            "machine": dict(machine),
            "command": command(),
            "messages": args.messages,
            "rounds": args.rounds,
            "idle_cpu_per_second": servers.idle_rate,
            "servers": {
                "plain": servers.plain_port,
                "slot_primary": servers.owner,
                "slot_replica": servers.replica,
                "others": servers.others,
            },
            "medians": [asdict(r) for r in runs],
            "runs": [asdict(r) for r in every],
        }
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
