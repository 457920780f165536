"""Django's HTTP under uvicorn: through its WSGI handler in a thread pool (the project) vs Django's ASGI handler.

Usage (from the project root):

    .venv/bin/python bench/serving.py [--path /healthz] [--seconds 5] [--rounds 3] [--workers 1]
        [--concurrency 64] [--redis-url redis://127.0.0.1:6379/13]

One run starts two uvicorn servers with the project's settings and middleware, ``--workers``
processes each: the project's application (``flashsale.asgi``: Django through
``flashsale.wsgi_bridge``), and the baseline, Django's own ``get_asgi_application()``, as the
project served HTTP before. Each serves ``--path`` (``/healthz``: one ``SELECT 1`` and one Redis
``PING``, Django's whole middleware stack) to wrk (one thread, ``--concurrency`` keep-alive
connections) for ``--seconds``, in alternating rounds; the figure is the median round, with the
servers' CPU per request. The database is a throwaway PostgreSQL database when PostgreSQL answers
on 127.0.0.1:5432, else a temporary SQLite file; Redis keys go to database 13 under ``fsbenchserve``.
Markdown to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_DB = "flashsale_bench_serving"


def django_asgi():
    """uvicorn --factory: the baseline, Django's own ASGI handler with the project's settings."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashsale.settings.base")
    from django.core.asgi import get_asgi_application

    return get_asgi_application()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", default="/healthz")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    return parser.parse_args(argv)


def database_url(tmp: str) -> tuple[str, bool]:
    """A throwaway PostgreSQL database when PostgreSQL answers, else a SQLite file."""
    psql = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc"]
    if shutil.which("psql") and subprocess.run([*psql, "select 1"], capture_output=True).returncode == 0:
        subprocess.run([*psql, f"drop database if exists {PG_DB}"], capture_output=True, check=True)
        subprocess.run([*psql, f"create database {PG_DB}"], capture_output=True, check=True)
        return f"postgres://postgres@127.0.0.1:5432/{PG_DB}", True
    return f"sqlite:///{tmp}/serving.sqlite3", False


def wrk(port: int, args: argparse.Namespace) -> tuple[float, str]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{args.concurrency}", f"-d{args.seconds}s", f"http://127.0.0.1:{port}{args.path}"],
        capture_output=True, text=True, timeout=args.seconds + 60,
    ).stdout  # fmt: skip
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return (float(rate.group(1)) if rate else 0.0), (errors.group(1) if errors else "0")


def main(argv: list[str] | None = None) -> int:
    # Only here, not at import: uvicorn imports this module for the baseline, and with bench/ first on
    # its path bench/inventory.py would shadow the inventory app.
    sys.path.insert(0, str(ROOT / "bench"))
    import fanout
    from fanout import free_port, machine_facts
    from join import process_tree_cpu, start_server, stop_server

    fanout.LOAD_AT_START = " ".join(f"{x:.2f}" for x in os.getloadavg())

    args = parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    tmp = tempfile.mkdtemp(prefix="flashsale-serving-")
    url, postgres = database_url(tmp)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "flashsale.settings.base",
        "DJANGO_DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": url,
        "REDIS_URL": args.redis_url,
        "FLASHSALE_REDIS_PREFIX": "fsbenchserve",
        "LOG_LEVEL": "WARNING",
    }
    procs = []
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
        ways = {}
        targets = {
            "project: WSGI handler in a thread pool": ["flashsale.asgi:application"],
            "baseline: Django's ASGI handler": ["--factory", "bench.serving:django_asgi"],
        }
        for name, target in targets.items():
            port = free_port()
            cmd = [str(ROOT / ".venv/bin/uvicorn"), *target, "--host", "127.0.0.1", "--port", str(port)]
            cmd += ["--workers", str(args.workers), "--no-access-log", "--log-level", "warning"]
            procs.append(start_server(cmd, env, Path(tmp) / f"{len(procs)}.log", port))
            ways[name] = {"port": port, "pid": procs[-1].pid, "rates": [], "cpu": 0.0, "requests": 0, "errors": 0}
        for way in ways.values():
            wrk(way["port"], argparse.Namespace(**{**vars(args), "seconds": 1}))  # warm-up
        for number in range(args.rounds):
            order = list(ways.items()) if number % 2 == 0 else list(reversed(ways.items()))
            for name, way in order:
                cpu0 = process_tree_cpu(way["pid"])
                rate, errors = wrk(way["port"], args)
                way["cpu"] += process_tree_cpu(way["pid"]) - cpu0
                way["requests"] += rate * args.seconds
                way["errors"] += int(errors)
                way["rates"].append(rate)
                print(f"round {number + 1}: {name}: {rate:,.0f}/s", file=sys.stderr, flush=True)
        import redis

        facts = dict(machine_facts(redis.Redis.from_url(args.redis_url), workers=args.workers))
        lines = ["Machine:", ""] + [f"- {k}: {facts[k]}" for k in ("CPU", "Python", "Redis", "Load average")]
        lines += [f"- Database: {'PostgreSQL (throwaway database)' if postgres else 'SQLite file'}"]
        lines += [f"- Servers: uvicorn, {args.workers} worker(s) each; load generator wrk, 1 thread"]
        lines += ["", "Command:", "", "```", " ".join([".venv/bin/python bench/serving.py", *sys.argv[1:]]), "```", ""]
        lines += [f"| `GET {args.path}` | Requests/s (median) | Rounds | Server CPU ms / request | Not 2xx |"]
        lines += ["| --- | ---: | --- | ---: | ---: |"]
        for name, way in ways.items():
            rounds = ", ".join(f"{r:,.0f}" for r in way["rates"])
            cpu = way["cpu"] / max(way["requests"], 1) * 1000
            lines.append(
                f"| {name} | {statistics.median(way['rates']):,.0f} | {rounds} | {cpu:.2f} | {way['errors']} |"
            )
        project, baseline = (statistics.median(w["rates"]) for w in ways.values())
        lines += ["", f"- The project's way vs the baseline: {project / max(baseline, 1):.2f}x."]
        print("\n".join(lines))
        return 0
    finally:
        for proc in procs:
            stop_server(proc)
        if postgres:
            with contextlib.suppress(Exception):
                subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"drop database if exists {PG_DB}"],
                               capture_output=True, timeout=30)  # fmt: skip
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
