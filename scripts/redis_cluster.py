"""Start (or find) a Redis Cluster of 3 primaries with 1 replica each on 127.0.0.1, for the sale's keys.

Usage: python scripts/redis_cluster.py up [--port 7000] [--dir var/cluster]   # prints the seed URL
       python scripts/redis_cluster.py down [--port 7000] [--dir var/cluster]

Debian's ``redis-server`` in cluster mode, nothing kept on disk (like the local single Redis), the cluster
made with ``redis-cli --cluster create``. ``up`` is idempotent: a cluster that already answers with all
16384 slots covered is left as it is. Processes stand for machines; ports ``port .. port+5``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

NODES = 6


def cli(port: int, *args: str, check: bool = False) -> str:
    done = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True, check=check)
    return done.stdout


def healthy(port: int) -> bool:
    """Every slot served, and each primary with its replica."""
    info = cli(port, "cluster", "info")
    flags = [line.split()[2] for line in cli(port, "cluster", "nodes").splitlines() if line.strip()]
    replicas = sum("slave" in flag.split(",") for flag in flags)
    return "cluster_state:ok" in info and "cluster_slots_assigned:16384" in info and replicas == NODES // 2


def up(port: int, directory: Path) -> str:
    url = f"redis://127.0.0.1:{port}/0"
    if healthy(port):
        return url
    if not shutil.which("redis-server"):
        sys.exit("redis_cluster: redis-server is not installed (apt-get install redis-server)")
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    ports = range(port, port + NODES)
    for node in ports:
        if cli(node, "ping").strip() == "PONG":
            continue
        workdir = directory / str(node)
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        subprocess.run(
            ["redis-server", "--port", str(node), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000", "--save", "",
             "--appendonly", "no", "--dir", str(workdir), "--daemonize", "yes",
             "--logfile", str(workdir / "redis.log"), "--pidfile", str(workdir / "redis.pid")],
            check=True,
        )  # fmt: skip
    deadline = time.monotonic() + 10
    while not all(cli(node, "ping").strip() == "PONG" for node in ports):
        if time.monotonic() > deadline:
            sys.exit("redis_cluster: the nodes did not start")
        time.sleep(0.1)
    subprocess.run(
        ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{node}" for node in ports), "--cluster-replicas", "1",
         "--cluster-yes"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while not all(healthy(node) for node in ports):
        if time.monotonic() > deadline:
            sys.exit("redis_cluster: the cluster did not become healthy")
        time.sleep(0.2)
    return url


def down(port: int, directory: Path) -> None:
    for node in range(port, port + NODES):
        cli(node, "shutdown", "nosave")
    shutil.rmtree(directory, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--port", type=int, default=7000)
    parser.add_argument("--dir", type=Path, default=Path("var/cluster"))
    args = parser.parse_args()
    if args.action == "up":
        print(up(args.port, args.dir))
    else:
        down(args.port, args.dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
