"""The same drop sold by one node (single Redis, two uvicorn workers on one port) and by the multi-node topology
of `make cluster-run` (Redis Cluster of 3 primaries, two web nodes behind HAProxy), in one run: CPU per shopper
of each web node and of the load balancer, and Redis commands per second on each primary, so that
docs/ARCHITECTURE.md can size a deployment from measured figures.

Usage: .venv/bin/python bench/cluster.py [--shoppers 3000] [--units 300] [--rate 200] [--only single|cluster]
                                         [--json FILE]

CPU is read from /proc (user + system time of each process and its children, in the sale's window);
Redis from ``INFO stats`` (total_commands_processed) before and after. Both stacks run with
``RATELIMIT_ENABLE=0 POW_COST=50`` (the simulation comes from one address) on this machine's two cores,
so the absolute figures are a floor for a real machine; the ratios are what carries over.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "bench"))
import cluster_run  # noqa: E402
import redis_cluster  # noqa: E402
from stack import Database, Stack, free_port  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
KEPT = (
    "oversold",
    "orders_paid",
    "server_errors_5xx",
    "database_and_redis_agree",
    "time_to_sell_out_seconds",
    "outcomes",
    "errors",
    "server_errors",
    "simulator_loop_lag_ms",
    "seconds",
)
CLUSTER_BASE_PORT = 7200


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its (waited-for and live) children."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    own = sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
    children = sum(cpu_seconds(child) for child in _children(pid))
    return own / TICKS + children


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(x) for x in (task / "children").read_text().split()]
    return found


def pids_of(pattern: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out if Path(f"/proc/{p}/exe").resolve().name.startswith(("python", "haproxy"))]


def commands(port: int) -> int:
    info = redis_cluster.cli(port, "info", "stats")
    return int(next(line.split(":")[1] for line in info.splitlines() if line.startswith("total_commands_processed")))


def simulate(env: dict, url: str, args, slug: str) -> tuple[dict, float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "manage.py", "simulate_drop", "--url", url, "--shoppers", str(args.shoppers), "--units",
         str(args.units), "--rate", str(args.rate), "--slug", slug, "--prefix", slug, "--concurrency", "200",
         "--timeout", "600", "--settle", "30", "--json", "--no-progress"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    if "{" not in done.stdout:
        sys.exit(f"simulate_drop failed: {done.stderr[-3000:]}")
    return json.loads(done.stdout[done.stdout.index("{") :]), time.monotonic() - started


def measured(env, url, args, slug, processes: dict[str, list[int]], redis_ports: dict[str, int]) -> dict:
    cpu_before = {name: sum(cpu_seconds(p) for p in pids) for name, pids in processes.items()}
    ops_before = {name: commands(port) for name, port in redis_ports.items()}
    report, seconds = simulate(env, url, args, slug)
    cpu = {name: round(sum(cpu_seconds(p) for p in pids) - cpu_before[name], 2) for name, pids in processes.items()}
    ops = {name: commands(port) - ops_before[name] for name, port in redis_ports.items()}
    sale = report["seconds"]["shoppers"]
    return {
        "report": {k: report[k] for k in KEPT},
        "wall_seconds": round(seconds, 1),
        "cpu_seconds": cpu,
        "cpu_ms_per_shopper": {name: round(1000 * value / args.shoppers, 2) for name, value in cpu.items()},
        "redis_commands": ops,
        "redis_commands_per_shopper": {name: round(value / args.shoppers, 1) for name, value in ops.items()},
        "redis_commands_per_second": {name: round(value / sale) for name, value in ops.items()},
    }


def single_node(args, folder: Path) -> dict:
    stack = Stack(log_dir=folder / "single", database=Database(f"flashsale_bench_single_{os.getpid()}"),
                  web_workers=2, stripe_proxy=False)  # fmt: skip
    try:
        stack.start(lambda text: print(f"[single] {text}", file=sys.stderr))
        web = stack.services["web"].proc.pid
        return measured(stack.env(), stack.web_url, args, "single", {"web (2 workers)": [web]},
                        {"redis": stack.redis.port})  # fmt: skip
    finally:
        stack.stop()
        stack.database.drop()


def multi_node(args, folder: Path) -> dict:
    database = Database(f"flashsale_bench_cluster_{os.getpid()}")
    database.create()
    port, web_base = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "STRIPE_", "CELERY_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="flashsale.settings.base", PORT=str(port), WEB_BASE_PORT=str(web_base),
        CLUSTER_BASE_PORT=str(CLUSTER_BASE_PORT), LOCALSTRIPE_PORT=str(free_port()),
        REDIS_URL="redis://127.0.0.1:6379/5", FLASHSALE_REDIS_PREFIX=f"bench{os.getpid()}", RATELIMIT_ENABLE="0",
        POW_COST="50", STRIPE_RATE_LIMIT="1000", DJANGO_DEBUG="0", DATABASE_URL=database.url,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        with cluster_run.running(env, folder) as manage_env:
            processes = {
                "web node 1": pids_of(f"uvicorn.*--port {web_base}$"),
                "web node 2": pids_of(f"uvicorn.*--port {web_base + 1}$"),
                "haproxy": pids_of(f"haproxy -db -f {folder}"),
            }
            primaries = {f"primary {p}": p for p in range(CLUSTER_BASE_PORT, CLUSTER_BASE_PORT + 6)
                         if "role:master" in redis_cluster.cli(p, "info", "replication")}  # fmt: skip
            return measured(manage_env, url, args, "cluster", processes, primaries)
    finally:
        database.drop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shoppers", type=int, default=3000)
    parser.add_argument("--units", type=int, default=300)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--only", choices=("single", "cluster"), help="run one of the two stacks only")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="flashsale-bench-cluster-"))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "commit": commit.stdout.strip(),
        "machine": f"{platform.processor() or platform.machine()}, nproc {os.cpu_count()}",
        "command": "bench/cluster.py " + " ".join(sys.argv[1:]),
    }
    if args.only != "cluster":
        result["single"] = single_node(args, folder)
    if args.only != "single":
        result["cluster"] = multi_node(args, folder)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
