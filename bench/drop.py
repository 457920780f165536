"""The full run: ``manage.py simulate_drop`` against a whole stack of its own, with py-spy on the servers.

Usage (from the project root):

    .venv/bin/python bench/drop.py [--shoppers 100000] [--units 1000] [--rate 500] [--cap-multiple 10]
        [--arrival prequeue] [--prequeue 900] [--bots 0.01] [--declined 0.01] [--no-buy 0.05]
        [--concurrency 200] [--sockets 18000] [--web-workers 2] [--profile-rate 10] [--timeout 3600]
        [--database flashsale_drop] [--keep-logs]

It starts the stack as ``make run`` does (uvicorn with ``--web-workers`` processes, a Celery worker
with concurrency 2, Celery beat, localstripe through scripts/localstripe_server.py), with a
redis-server of its own (no persistence) and a throwaway PostgreSQL database, all from
``bench/stack.py``. Rate limits stay on: every simulated shopper sends an X-Forwarded-For address of
its own and the server trusts one proxy (``TRUSTED_PROXY_COUNT=1``), so the limits apply per shopper.

Baselines, measured in the same run on the same stack before the drop: ``GET /healthz`` (a Django
view that reads the database and Redis) with wrk for 5 s, the rate of a plain Django request on
this stack; and the admission rate the drop is set to.

Then it runs ``simulate_drop`` (every shopper over real HTTP and websockets: sign-in, card hold,
proof-of-work, join, websocket or polling, purchase) and records the web and Celery worker
processes the whole time with ``py-spy record --gil --nonblocking`` (samples of the thread holding
the GIL: where the Python CPU goes). The report (the simulation's figures, the baselines, the CPU
each process used, where the web and worker time went, machine facts and the command) goes to
stdout as Markdown, progress to stderr. The exit code is 1 when a unit was oversold or a 5xx or
an unanswered request came back, 2 when the stack failed.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chaos import _codes, machine_facts, report_read, rows_build
from join import process_tree_cpu
from stack import ROOT, VENV_BIN, Database, Stack

PY_SPY = VENV_BIN / "py-spy"
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?):\d+\)$")
OUR_PACKAGES = ("flashsale", "waitingroom", "inventory", "payments")
# Frames of ours that every request passes through: a sample is put down to the first frame below them.
PLUMBING = (
    "flashsale/asgi.py",
    "flashsale/wsgi_bridge.py",
    "flashsale/metrics.py",
    "flashsale/api.py",
    "flashsale/logs.py",
    "flashsale/ratelimits.py",
    "flashsale/net.py",
    "flashsale/security.py",
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shoppers", type=int, default=100_000)
    p.add_argument("--units", type=int, default=1_000)
    p.add_argument("--rate", type=int, default=500, help="the drop's admissions per second")
    p.add_argument("--cap-multiple", type=int, default=10, help="the drop's cap on unfinished admissions")
    p.add_argument("--checkout-window", type=int, default=120)
    p.add_argument("--arrival", choices=("burst", "prequeue"), default="prequeue")
    p.add_argument("--burst", type=float, default=1.0, help="seconds over which a burst arrives (burst arrival)")
    p.add_argument(
        "--stripe-rate", type=int, default=1000,
        help="STRIPE_RATE_LIMIT of the stack (25 is Stripe's default; localstripe itself has no limit)",
    )  # fmt: skip
    p.add_argument("--prequeue", type=float, default=900.0, help="seconds of the pre-queue (prequeue arrival)")
    p.add_argument("--bots", type=float, default=0.01)
    p.add_argument("--declined", type=float, default=0.01)
    p.add_argument("--no-buy", type=float, default=0.05)
    p.add_argument("--concurrency", type=int, default=200, help="simulate_drop's HTTP requests in flight")
    p.add_argument("--sockets", type=int, default=18_000, help="simulate_drop's websockets at most")
    p.add_argument("--web-workers", type=int, default=2)
    p.add_argument("--profile-rate", type=int, default=10, help="py-spy samples per second (0: no py-spy)")
    p.add_argument("--timeout", type=float, default=3600.0, help="simulate_drop --timeout")
    p.add_argument("--settle", type=float, default=900.0, help="simulate_drop --settle")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--database", default="flashsale_drop", help="throwaway PostgreSQL database (dropped after)")
    p.add_argument("--keep-logs", action="store_true", help="keep the stack's logs and py-spy files")
    return p.parse_args(argv)


def healthz_baseline(url: str, seconds: int = 5) -> str:
    """Requests per second of GET /healthz with wrk (64 connections, one thread), or why not."""
    if shutil.which("wrk") is None:
        return "not measured (no wrk on the PATH)"
    out = subprocess.run(
        ["wrk", "-t1", "-c64", f"-d{seconds}s", f"{url}/healthz"], capture_output=True, text=True, timeout=seconds + 30
    ).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if rate is None:
        return f"not measured (wrk said: {out.strip()[-200:]})"
    return f"{float(rate.group(1)):,.0f} requests/s" + (f" ({non2xx.group(1)} not 2xx)" if non2xx else "")


def server_pids(stack: Stack) -> dict[str, int]:
    pids = {name: stack.services[name].proc.pid for name in ("web", "worker", "ticker", "beat", "localstripe")}
    pids["redis"] = stack.redis.proc.pid
    return pids


def py_spy_start(pid: int, out: Path, rate: int) -> subprocess.Popen:
    cmd = [str(PY_SPY), "record", "--pid", str(pid), "--subprocesses", "--gil", "--nonblocking", "--rate", str(rate)]
    cmd += ["--format", "raw", "--output", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def py_spy_stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def samples_read(path: Path) -> tuple[collections.Counter, collections.Counter, int]:
    """(samples by what was being served, samples by package of the innermost frame, all samples).

    py-spy's raw file is one collapsed stack a line, outermost frame first, then the count. What was
    being served is the outermost frame of our own code below the plumbing every request passes
    through (the view, consumer or lean path); Django's middleware or the event loop otherwise.
    """
    served: collections.Counter = collections.Counter()
    packages: collections.Counter = collections.Counter()
    total = 0
    if not path.exists():
        return served, packages, 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [m for m in (FRAME.match(f.strip()) for f in stack.split(";")) if m is not None]
        if not count.isdigit() or not frames:
            continue
        n = int(count)
        total += n
        top = frames[-1]["file"].split("/")[0].removesuffix(".py")
        packages["our code" if top in OUR_PACKAGES else top] += n
        ours = next(
            (f for f in frames if f["file"].startswith(OUR_PACKAGES) and not f["file"].startswith(PLUMBING)), None
        )
        if ours is not None:
            served[f"{ours['func']} ({ours['file']})"] += n
        elif any(f["file"].startswith("django/core/handlers/") for f in frames):
            served["Django's middleware (sessions, auth, CSRF) outside our views"] += n
        else:
            served["event loop: HTTP and websocket protocol, asyncio"] += n
    return served, packages, total


def simulate(stack: Stack, args: argparse.Namespace, log_dir: Path) -> dict:
    slug = f"drop-{time.strftime('%H%M%S')}"
    command = [
        sys.executable, "manage.py", "simulate_drop", "--url", stack.web_url, "--shoppers", str(args.shoppers),
        "--units", str(args.units), "--rate", str(args.rate), "--cap-multiple", str(args.cap_multiple),
        "--checkout-window", str(args.checkout_window), "--arrival", args.arrival, "--prequeue", str(args.prequeue),
        "--burst", str(args.burst),
        "--bots", str(args.bots), "--declined", str(args.declined), "--no-buy", str(args.no_buy),
        "--concurrency", str(args.concurrency), "--sockets", str(args.sockets), "--forwarded-for",
        "--seed", str(args.seed), "--prefix", "full", "--slug", slug, "--timeout", str(int(args.timeout)),
        "--settle", str(int(args.settle)), "--json",
    ]  # fmt: skip
    out_path, err_path = log_dir / "simulate.json", log_dir / "simulate.log"
    log(f"simulate_drop --slug {slug}: {args.shoppers:,} shoppers, {args.units:,} units (progress in {err_path})")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(command, cwd=ROOT, env=stack.env(), stdout=out, stderr=err, start_new_session=True)
    shown = 0
    try:
        while proc.poll() is None:
            time.sleep(5)
            lines = err_path.read_text(errors="replace").splitlines()
            if len(lines) > shown:
                log(lines[-1][:300])
                shown = len(lines)
            dead = stack.check_alive()
            if dead:
                log(f"died on its own: {', '.join(dead)}; see {log_dir}")
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
    report = report_read(out_path, err_path, proc.returncode, label="the full run")
    report["command"] = shlex.join(["manage.py", *command[2:]])
    return report


def markdown(args, report: dict, facts, baseline: str, cpu: dict[str, float], profiles: dict) -> str:
    lines = ["Machine:", ""]
    lines += [f"- {name}: {value}" for name, value in facts]
    lines += ["", "Command:", "", "```", shlex.join([".venv/bin/python", "bench/drop.py", *sys.argv[1:]]), "```"]
    lines += ["", f"simulate_drop ran as: `{report['command']}`", ""]
    rate = report["admission_rate"]
    lines += ["| Figure | Value |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in rows_build(report)]
    free = rate.get("free_flow")
    off = "" if not free else f" ({(free - rate['setting']) / rate['setting'] * 100:+.1f}% of the setting)"

    def per_second(value) -> str:
        return "not measured" if value is None else f"{value}/s"

    lines += [
        f"| Admission rate | set {rate['setting']}/s (the baseline); measured {per_second(free)} in free flow "
        f"over {rate['free_flow_seconds']} s and {rate['free_flow_ticks']} ticks, on the ticks' Redis clock{off}; "
        f"{per_second(rate['free_flow_sampled'])} on the sampler's clock; {per_second(rate['while_moving'])} while "
        "the queue moved "
        f"({rate['while_moving_seconds']} s) |",
        f"| Baseline: GET /healthz on this stack (wrk, 5 s, before the drop) | {baseline} |",
        f"| Join latency p50 / p99 | {report['join_latency_ms']['p50']} / {report['join_latency_ms']['p99']} ms |",
        "| Steps p50 / p99 (ms) | "
        + "; ".join(f"{step} {v['p50_ms']:,.0f} / {v['p99_ms']:,.0f}" for step, v in report["latency_ms"].items())
        + " |",
        f"| Rate limits | {_codes({k: v for k, v in report['errors'].items() if '429' in k}) or 'no 429'} |",
    ]
    lines += ["", "CPU seconds used during the run, by process (with its children):", ""]
    lines += ["| Process | CPU s |", "| --- | ---: |"]
    lines += [f"| {name} | {seconds:,.0f} |" for name, seconds in sorted(cpu.items(), key=lambda kv: -kv[1])]
    for name, (served, packages, total) in profiles.items():
        if not total:
            continue
        lines += ["", f"Where the {name} time went (py-spy, {total:,} samples of the thread holding the GIL):", ""]
        lines += ["| Serving | Share |", "| --- | ---: |"]
        lines += [f"| `{what}` | {n / total:.1%} |" for what, n in served.most_common(12)]
        lines += ["", "| Package of the innermost frame | Share |", "| --- | ---: |"]
        lines += [f"| {package} | {n / total:.1%} |" for package, n in packages.most_common(12)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_at_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    log_dir = Path(tempfile.mkdtemp(prefix="flashsale-drop-"))
    stack = Stack(
        log_dir=log_dir, database=Database(args.database), web_workers=args.web_workers, stripe_proxy=False,
        stripe_rate_limit=args.stripe_rate,
    )  # fmt: skip
    env_extra = {"TRUSTED_PROXY_COUNT": "1", "RATELIMIT_ENABLE": "1"}
    original_env = stack.env
    stack.env = lambda: {**original_env(), **env_extra}  # rate limits on, one address per shopper
    spies: dict[str, tuple[subprocess.Popen, Path]] = {}
    failed = False
    try:
        stack.start(log)
        baseline = healthz_baseline(stack.web_url)
        log(f"baseline GET /healthz: {baseline}")
        pids = server_pids(stack)
        cpu0 = {name: process_tree_cpu(pid) for name, pid in pids.items()}
        if args.profile_rate and PY_SPY.exists():
            for name in ("web", "worker"):
                path = log_dir / f"py-spy-{name}.txt"
                spies[name] = (py_spy_start(pids[name], path, args.profile_rate), path)
        report = simulate(stack, args, log_dir)
        cpu = {name: process_tree_cpu(pid) - cpu0[name] for name, pid in pids.items()}
        for proc, _ in spies.values():
            py_spy_stop(proc)
        profiles = {
            {"web": "web (uvicorn)", "worker": "Celery worker"}[name]: samples_read(path)
            for name, (_, path) in spies.items()
        }
        print(markdown(args, report, machine_facts(stack, load_at_start), baseline, cpu, profiles))
        failed = not report["ok"]
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        log(f"the run failed: {exc}")
        return 2
    finally:
        for proc, _ in spies.values():
            if proc.poll() is None:
                proc.kill()
        stack.stop()
        if args.keep_logs:
            log(f"logs kept in {log_dir}")
        else:
            shutil.rmtree(log_dir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
