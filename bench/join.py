"""Joins per second through the real server stack, against an empty Django view; Redis memory per waiting shopper.

Usage (from the project root):

    .venv/bin/python bench/join.py [--joins 12000] [--rounds 3] [--concurrency 64] [--workers 2]
        [--load-generator {wrk,aiohttp}] [--wrk-threads 1] [--redis-url redis://127.0.0.1:6379/13]
        [--max-seconds 900]

One run:

* migrates a temporary SQLite database, schedules a live drop, creates the shoppers in bulk and
  signs them in by writing their sessions straight into the session table (as bench/fanout.py
  does), marks each one's card as authorized for the drop (SADD into
  ``payments.redis_keys.authorized_key``), and solves one ALTCHA proof-of-work per shopper
  beforehand (``POW_COST=10`` for the bench; the server still verifies every one);
* starts the project's server as the Procfile does (``uvicorn flashsale.asgi:application``,
  ``--workers`` processes), and the baseline: ``gunicorn`` sync workers (as many) serving an empty
  Django view at ``/empty`` (the project's settings and full middleware, this module's
  ``empty_wsgi``);
* sends every shopper's join, ``POST /api/drops/<slug>/queue`` with the session cookie, the
  CSRF cookie and header, a browser User-Agent and the solved proof-of-work, over
  ``--concurrency`` keep-alive connections, and the same requests to the empty view. The rounds
  alternate between the two, and the rate is the median round. Rate limits stay on:
  ``TRUSTED_PROXY_COUNT=1`` and one X-Forwarded-For address per shopper stand for shoppers behind
  a proxy, since a single address would be limited at 120 joins a minute;
* the load generator is ``wrk`` when it is on the PATH (the default; ``--wrk-threads`` threads):
  each round's requests go to a file in the temporary directory, and ``bench/join_wrk.lua`` sends
  each exactly once, then stops wrk; the round's rate is its responses over the time from wrk's
  start to the last response, and p50/p99 are wrk's percentiles (after its coordinated-omission
  correction), the median of the rounds. ``--load-generator aiohttp`` sends them from this process
  instead (one asyncio event loop), which competes with the servers for the CPUs far more;
* measures the Redis memory the queue keeps per waiting shopper: MEMORY USAGE of every bench key
  before and after the joins, by kind, and INFO's used_memory delta (Redis is shared, so that one
  is noisy).

Redis keys go to database 13 (0 and 15 are refused) under the prefix ``fsbenchjoin`` and are
deleted afterwards, as is the temporary database. Servers, Redis and the load generator share the
machine's CPUs (each round's progress line says how much CPU the load generator used). The Markdown
report goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import math
import os
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
REDIS_PREFIX = "fsbenchjoin"
DROP_SLUG = "join-bench"
SHOPPER_PREFIX = "joinbench"
POW_COST = 10
CSRF_TOKEN = "benchcsrf0123456789abcdefghijklm"  # noqa: S105  (32 characters: an unmasked CSRF secret)
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
WARMUP = 300
WRK_SCRIPT = Path(__file__).resolve().parent / "join_wrk.lua"

# --- The baseline: an empty Django view (gunicorn imports this module as ``bench.join``) -------

urlpatterns: list = []


def empty_view(request):
    from django.http import HttpResponse

    return HttpResponse(b"")


def empty_wsgi():
    """WSGI application: the project's settings and middleware, one empty view at /empty."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashsale.settings.base")
    import django

    django.setup()
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application
    from django.urls import path

    urlpatterns.append(path("empty", empty_view))
    settings.ROOT_URLCONF = __name__
    return get_wsgi_application()


# --- The bench ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--joins", type=int, default=12_000, help="measured joins in all (default 12000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds each way, alternating (default 3)")
    parser.add_argument("--concurrency", type=int, default=64, help="connections in flight (default 64)")
    parser.add_argument("--workers", type=int, default=2, help="server processes of each way (default 2)")
    wrk_found = shutil.which("wrk") is not None
    parser.add_argument(
        "--load-generator",
        choices=("wrk", "aiohttp"),
        default="wrk" if wrk_found else "aiohttp",
        help="wrk (a child process; the default when it is on the PATH) or aiohttp (in this process)",
    )
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13", help="Redis for the bench keys")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="bound on the whole run (default 900)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.joins < args.rounds or args.concurrency < 1 or args.workers < 1:
        parser.error("--rounds, --concurrency and --workers must be at least 1, --joins at least --rounds")
    if args.load_generator == "wrk":
        if not wrk_found:
            parser.error("--load-generator wrk: no wrk on the PATH")
        if args.wrk_threads < 1 or args.concurrency % args.wrk_threads:
            parser.error("--wrk-threads must be at least 1 and divide --concurrency (each thread opens its share)")
        if args.joins // args.rounds < args.wrk_threads:
            parser.error("--wrk-threads must not exceed the joins of a round (each thread needs requests)")
    if int(urlsplit(args.redis_url).path.lstrip("/") or 0) in {0, 15}:
        parser.error("--redis-url must not point at Redis database 0 or 15 (the app's and the tests')")
    return args


def configure_environment(args: argparse.Namespace, tmp: str) -> dict[str, str]:
    env = {
        "DJANGO_SETTINGS_MODULE": "flashsale.settings.base",
        "DJANGO_DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "FLASHSALE_REDIS_PREFIX": REDIS_PREFIX,
        "REDIS_URL": args.redis_url,
        "DATABASE_URL": f"sqlite:///{tmp}/join.sqlite3",
        "LOG_LEVEL": "WARNING",
        "POW_COST": str(POW_COST),
        "TRUSTED_PROXY_COUNT": "1",
    }
    os.environ.update(env)
    return {**os.environ, **env}


def pow_payloads(drop_id: int, shopper_ids: list[int]) -> list[str]:
    """Solve one challenge per shopper (what the page's widget does before it joins)."""
    import altcha

    from waitingroom.pow import challenge_create

    payloads = []
    for shopper_id in shopper_ids:
        ch = challenge_create(drop_id=drop_id, shopper_id=shopper_id, cost=POW_COST)
        solution = altcha.solve_challenge_v1(ch["challenge"], ch["salt"], ch["algorithm"], ch["maxnumber"])
        data = {k: ch[k] for k in ("algorithm", "challenge", "salt", "signature")} | {"number": solution.number}
        payloads.append(base64.b64encode(json.dumps(data).encode()).decode())
    return payloads


def key_kind(key: str) -> str:
    if ":pow:" in key:
        return "proof-of-work spent markers (expire with the challenge)"
    if ":rl:" in key or "ratelimit" in key:
        return "rate-limit counters (expire within a minute)"
    return "queue state (" + re.sub(r"\d+", "N", key.split("}", 1)[-1].lstrip(":")) + ")"


def redis_memory(raw) -> tuple[int, dict[str, int]]:
    """(INFO used_memory, bytes by kind of bench key)."""
    by_kind: dict[str, int] = {}
    for key in raw.scan_iter(match=f"*{REDIS_PREFIX}*", count=1000):
        name = key.decode()
        kind = key_kind(name)
        if kind.startswith("queue state"):
            kind = "queue state"
        by_kind[kind] = by_kind.get(kind, 0) + (raw.memory_usage(key, samples=0) or 0)
    return int(raw.info("memory")["used_memory"]), by_kind


@dataclass
class Way:
    name: str
    port: int
    path: str
    expect: int
    rates: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # seconds, every request (aiohttp)
    p50s: list[float] = field(default_factory=list)  # seconds, one per round (wrk)
    p99s: list[float] = field(default_factory=list)
    statuses: dict[int | str, int] = field(default_factory=dict)
    server_cpu: float = 0.0
    requests: int = 0
    log: Path | None = None


def tail(path: Path | None, chars: int = 1500) -> str:
    return path.read_text(errors="replace")[-chars:] if path is not None and path.exists() else ""


async def fire(way: Way, requests: list[tuple[str, dict]], concurrency: int, *, record: bool) -> float:
    """Send the requests over ``concurrency`` keep-alive connections; return requests per second."""
    import aiohttp

    pending = iter(requests)
    url = f"http://127.0.0.1:{way.port}{way.path}"
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()) as http:

        async def worker() -> None:
            for body, headers in pending:
                started = time.perf_counter()
                try:
                    async with http.post(url, data=body, headers=headers) as response:
                        await response.read()
                        status: int | str = response.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    status = exc.__class__.__name__
                if record:
                    way.latencies.append(time.perf_counter() - started)
                    way.statuses[status] = way.statuses.get(status, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(requests) / (time.perf_counter() - started)


def wrk_version() -> str:
    """The first line of ``wrk -v`` without the copyright (wrk exits 1 after printing it)."""
    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10, check=False).stdout
    return out.splitlines()[0].split(" Copyright")[0] if out.strip() else "wrk (unknown version)"


def write_requests(path: Path, requests: list[tuple[str, dict]]) -> Path:
    """One request a line for bench/join_wrk.lua: the body, then header name, value, ..., tab-separated."""
    with open(path, "w") as out:
        for body, headers in requests:
            fields = [body, *itertools.chain.from_iterable(headers.items())]
            assert not any("\t" in f or "\n" in f for f in fields), "a field holds a tab or a newline"
            out.write("\t".join(fields) + "\n")
    return path


def fire_wrk(way: Way, requests_file: Path, count: int, args: argparse.Namespace, deadline: float) -> dict:
    """Send the file's ``count`` requests once each with wrk; return the script's WRKJSON summary."""
    bound = math.ceil(deadline - time.monotonic())
    if bound < 1:
        raise TimeoutError("--max-seconds has passed")
    threads = args.wrk_threads
    cmd = ["wrk", f"-t{threads}", f"-c{args.concurrency}", f"-d{bound}s", "--timeout", "30s", "-s", str(WRK_SCRIPT)]
    cmd += [f"http://127.0.0.1:{way.port}{way.path}", "--", str(requests_file), str(threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finished, stderr = 0, []
    try:
        for line in proc.stderr:
            if line.startswith("WRKTHREADDONE "):
                finished += 1
                if finished == threads:
                    break
            else:  # a Lua error: wrk would go on with its default request until the bound
                stderr.append(line)
                proc.kill()
        while proc.poll() is None:
            if finished == threads:
                # wrk's main thread sleeps for the whole -d unless interrupted; the threads have stopped.
                proc.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(2)
        out = proc.stdout.read()
        stderr.append(proc.stderr.read())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    lines = [line for line in out.splitlines() if line.startswith("WRKJSON ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {''.join(stderr)[-2000:]}{out[-2000:]}")
    result = json.loads(lines[0].removeprefix("WRKJSON "))
    if finished < threads or result["received"] != count:
        raise RuntimeError(f"wrk ran out of time with {result['received']} of {count} responses: {result}")
    return result


def process_tree_cpu(pid: int) -> float:
    import psutil

    total = 0.0
    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = proc.cpu_times()
                total += times.user + times.system
    return total


def start_server(cmd: list[str], env: dict[str, str], log_path: Path, port: int) -> subprocess.Popen:
    from fanout import raise_nofile_limit

    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=raise_nofile_limit
        )
    deadline = time.monotonic() + 30
    import socket

    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log_path.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            time.sleep(1.0)  # let every worker come up
            return proc
        time.sleep(0.2)
    raise RuntimeError(f"server did not listen on {port}")


def stop_server(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def run(args: argparse.Namespace, tmp: str, procs: list[subprocess.Popen]) -> str:
    import django
    import redis
    from fanout import free_port, log, machine_facts, percentile, prepare_data, version

    env = configure_environment(args, tmp)
    django.setup()
    log("migrating the temporary database")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=300
    )
    raw = redis.Redis.from_url(args.redis_url)
    redis_clean(raw)
    total = args.joins + WARMUP
    log(f"creating the drop and {total} signed-in shoppers, solving their proofs-of-work")
    drop, session_keys, shopper_ids = prepare_data(total, slug=DROP_SLUG, prefix=SHOPPER_PREFIX)
    from payments.redis_keys import authorized_key

    for start in range(0, total, 5000):
        # What a successful card hold records: shopper id -> card fingerprint (one card each).
        batch = shopper_ids[start : start + 5000]
        raw.hset(authorized_key(drop.pk), mapping={shopper: f"bench-card-{shopper}" for shopper in batch})
    payloads = pow_payloads(drop.pk, shopper_ids)
    requests = []
    for i, (session_key, payload) in enumerate(zip(session_keys, payloads, strict=True)):
        body = json.dumps({"altcha": payload, "fingerprint": f"bench-device-{i:08d}", "signals": {}})
        headers = {
            "Content-Type": "application/json",
            "Cookie": f"sessionid={session_key}; csrftoken={CSRF_TOKEN}",
            "X-CSRFToken": CSRF_TOKEN,
            "User-Agent": USER_AGENT,
            "X-Forwarded-For": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
        }
        requests.append((body, headers))

    join_port, empty_port = free_port(), free_port()
    uvicorn = [str(ROOT / ".venv/bin/uvicorn"), "flashsale.asgi:application", "--host", "127.0.0.1"]
    uvicorn += [
        "--port",
        str(join_port),
        "--workers",
        str(args.workers),
        "--no-access-log",
        "--log-level",
        "warning",
        "--no-proxy-headers",
    ]
    # Imported as bench.join from the project root: with bench/ first on the path, bench/inventory.py
    # would shadow the inventory app.
    gunicorn = [str(ROOT / ".venv/bin/gunicorn"), "--chdir", str(ROOT), "bench.join:empty_wsgi()"]
    gunicorn += ["--bind", f"127.0.0.1:{empty_port}", "--workers", str(args.workers), "--log-level", "warning"]
    procs.append(start_server(uvicorn, env, Path(tmp) / "uvicorn.log", join_port))
    procs.append(start_server(gunicorn, env, Path(tmp) / "gunicorn.log", empty_port))
    join = Way(
        "join: POST /api/drops/<slug>/queue, uvicorn (Procfile)", join_port, f"/api/drops/{DROP_SLUG}/queue", 201
    )
    empty = Way("empty Django view, gunicorn sync", empty_port, "/empty", 200)
    pids = {id(join): procs[0].pid, id(empty): procs[1].pid}

    per_round = args.joins // args.rounds
    chunks = [requests[WARMUP + n * per_round : WARMUP + (n + 1) * per_round] for n in range(args.rounds)]

    def order(number: int) -> tuple[Way, Way]:
        return (join, empty) if number % 2 == 0 else (empty, join)

    def account(way: Way, number: int, count: int, rate: float, server_cpu: float, generator_cpu: float) -> None:
        way.server_cpu += server_cpu
        way.requests += count
        way.rates.append(rate)
        log(
            f"round {number + 1}/{args.rounds}: {way.name}: {rate:,.0f}/s (CPU ms/request: "
            f"server {server_cpu / count * 1000:.2f}, load generator {generator_cpu / count * 1000:.2f})"
        )

    async def measure() -> None:
        log("warming up")
        await fire(join, requests[:WARMUP], args.concurrency, record=False)
        await fire(empty, requests[:WARMUP], args.concurrency, record=False)
        for number, chunk in enumerate(chunks):
            for way in order(number):
                cpu0, own0 = process_tree_cpu(pids[id(way)]), time.process_time()
                rate = await fire(way, chunk, args.concurrency, record=True)
                server_cpu = process_tree_cpu(pids[id(way)]) - cpu0
                account(way, number, len(chunk), rate, server_cpu, time.process_time() - own0)

    def children_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def measure_wrk() -> None:
        deadline = time.monotonic() + args.max_seconds
        log("warming up")
        warmup = write_requests(Path(tmp) / "wrk-warmup.tsv", requests[:WARMUP])
        for way in (join, empty):
            fire_wrk(way, warmup, WARMUP, args, deadline)
        for number, chunk in enumerate(chunks):
            requests_file = write_requests(Path(tmp) / f"wrk-round-{number + 1}.tsv", chunk)
            for way in order(number):
                cpu0, wrk0 = process_tree_cpu(pids[id(way)]), children_cpu()
                result = fire_wrk(way, requests_file, len(chunk), args, deadline)
                server_cpu = process_tree_cpu(pids[id(way)]) - cpu0
                way.p50s.append(result["latency_us"]["p50"] / 1e6)
                way.p99s.append(result["latency_us"]["p99"] / 1e6)
                for status, count in result["statuses"].items():
                    way.statuses[int(status)] = way.statuses.get(int(status), 0) + count
                for kind in ("connect", "read", "write", "timeout"):  # "status" (4xx/5xx) is in the statuses
                    if count := result["errors"][kind]:
                        way.statuses[f"wrk {kind} errors"] = way.statuses.get(f"wrk {kind} errors", 0) + count
                # span_us ends at the last response; summary.duration also holds wrk's wait for the SIGINT.
                rate = result["received"] / (result["span_us"] / 1e6)
                account(way, number, len(chunk), rate, server_cpu, children_cpu() - wrk0)
                duration, span = result["duration_us"] / 1000, result["span_us"] / 1000
                log(f"  wrk: summary.duration {duration:,.1f} ms, start to last response {span:,.1f} ms")

    used0, kinds0 = redis_memory(raw)
    if args.load_generator == "wrk":
        measure_wrk()
    else:
        asyncio.run(asyncio.wait_for(measure(), args.max_seconds))
    used1, kinds1 = redis_memory(raw)
    from waitingroom.redis_keys import queue_keys

    queued = raw.hlen(queue_keys(drop.pk).entries)

    facts = dict(machine_facts(raw))
    facts["Servers"] = f"uvicorn {version('uvicorn')} and gunicorn {version('gunicorn')}, {args.workers} workers each"
    if args.load_generator == "wrk":
        threads = "1 thread" if args.wrk_threads == 1 else f"{args.wrk_threads} threads"
        facts["Load generator"] = (
            f"{wrk_version()} (a child process, bench/join_wrk.lua), {threads}, {args.concurrency} connections; "
            "p50/p99 are wrk's (coordinated-omission corrected), the median of the rounds"
        )
    else:
        facts["Load generator"] = f"this process, one asyncio event loop, aiohttp {version('aiohttp')}"
    lines = ["Machine:", ""]
    lines += [f"- {name}: {facts[name]}" for name in ("CPU", "Python", "Redis", "Servers", "Load generator")]
    lines += [f"- Load average: {facts['Load average']}"]
    lines += ["", "Command:", "", "```", shlex.join([".venv/bin/python", "bench/join.py", *sys.argv[1:]]), "```", ""]
    lines += [
        "| Way | Requests/s (median round) | Rounds | p50 ms | p99 ms | Statuses | Server CPU ms / request |",
        "| --- | ---: | --- | ---: | ---: | --- | ---: |",
    ]
    for way in (join, empty):
        if way.latencies:
            lat = sorted(way.latencies)
            p50, p99 = percentile(lat, 50), percentile(lat, 99)
        else:
            p50, p99 = statistics.median(way.p50s), statistics.median(way.p99s)
        rounds = ", ".join(f"{r:,.0f}" for r in way.rates)
        statuses = ", ".join(f"{k}: {v:,}" for k, v in sorted(way.statuses.items(), key=str))
        lines.append(
            f"| {way.name} | {statistics.median(way.rates):,.0f} | {rounds} | {p50 * 1000:.1f} | "
            f"{p99 * 1000:.1f} | {statuses} | {way.server_cpu / max(way.requests, 1) * 1000:.2f} |"
        )
    for way in (join, empty):
        if set(way.statuses) != {way.expect}:
            log(f"{way.name}: unexpected statuses {way.statuses}; the server log says: {tail(way.log)}")
    ratio = statistics.median(join.rates) / statistics.median(empty.rates)
    lines += [
        "",
        f"- Joins vs the empty view: {ratio:.2f}x (target: at least 2x).",
        f"- 100,000 joins at the median rate: {100_000 / statistics.median(join.rates):,.0f} s (extrapolated).",
        f"- Redis memory per waiting shopper ({queued:,} queued, warm-up included):",
    ]
    for kind in sorted(set(kinds0) | set(kinds1)):
        delta = kinds1.get(kind, 0) - kinds0.get(kind, 0)
        lines.append(f"  - {kind}: {delta / queued:,.0f} bytes")
    lines.append(f"  - INFO used_memory delta (shared Redis, noisy): {(used1 - used0) / queued:,.0f} bytes")
    return "\n".join(lines)


def redis_clean(raw) -> int:
    deleted = 0
    for key in raw.scan_iter(match=f"*{REDIS_PREFIX}*", count=1000):
        deleted += raw.delete(key)
    return deleted


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import fanout

    fanout.LOAD_AT_START = " ".join(f"{x:.2f}" for x in os.getloadavg())
    fanout.raise_nofile_limit()
    tmp = tempfile.mkdtemp(prefix="flashsale-join-")
    procs: list[subprocess.Popen] = []
    try:
        print(run(args, tmp, procs))
        return 0
    finally:
        for proc in procs:
            stop_server(proc)
        with contextlib.suppress(Exception):
            import redis

            print(f"deleted {redis_clean(redis.Redis.from_url(args.redis_url))} bench keys", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
