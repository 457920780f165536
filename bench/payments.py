"""Purchase latency (claim + capture + order) and the cancellation pipeline's throughput, against localstripe.

Usage (from the project root):

    .venv/bin/python bench/payments.py [--shoppers 2000] [--rate 500] [--workers 16]
        [--cancel-holds 600] [--cancel-rate 50] [--redis-url redis://127.0.0.1:6379/14]
        [--db auto|postgres|sqlite] [--pg-url postgres://postgres@127.0.0.1:5432/postgres]

One run, in one process, with a localstripe process of its own:

* ``--shoppers`` shoppers authorize their card for one drop (the real service: a Stripe Customer,
  the card attached, a manual-capture PaymentIntent), join its queue and are admitted by the real
  admission tick at ``--rate`` per second (the drop's admission rate, ticked every 50 ms);
  ``--workers`` threads buy for them as they are admitted with ``payments.services.purchase_make``:
  admission check, the capture's rate-limit token, claim, database guard, capture at localstripe,
  paid, admission complete. Latency is measured per purchase from the call to its return, and
  from the admission to the return (which adds the wait for a free worker);
* the cancellation pipeline: ``--cancel-holds`` holds on two drops that then end, released by two
  chains at once (one per drop, as two Celery workers would) through the one shared token bucket
  at ``--cancel-rate`` calls per second; each chain run cancels until the bucket is empty and
  continues after the wait the bucket names, as the task does with its countdown.

Isolation: Redis keys go to database 14 by default (0 and 15, the app's and the tests', are
refused) under the prefix ``fsbenchpay`` and are deleted afterwards; the database is a throwaway
PostgreSQL database (``flashsale_bench_payments``, migrated, dropped afterwards) when PostgreSQL
answers, else a temporary SQLite file. localstripe runs on a free port through
``scripts/localstripe_server.py``: in memory only and indexed by kind, so its cost per call does
not grow with the number of objects (a cost of the fake, not of Stripe). The Markdown report goes
to stdout.
"""

from __future__ import annotations

import argparse
import os
import platform
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
REDIS_PREFIX = "fsbenchpay"
PG_BENCH_DB = "flashsale_bench_payments"
FORBIDDEN_REDIS_DBS = {0, 15}
LOCALSTRIPE_SERVER = ROOT / "scripts" / "localstripe_server.py"


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rates", default="500,100,25", help="admission rates per second, one purchase run each (default 500,100,25)"
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds of admissions per run (default 2)")
    parser.add_argument("--workers", type=int, default=16, help="threads buying (default 16)")
    parser.add_argument("--cancel-holds", type=int, default=400, help="holds to cancel (default 400)")
    parser.add_argument("--cancel-rate", type=int, default=50, help="STRIPE_RATE_LIMIT while canceling")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--db", choices=["auto", "postgres", "sqlite"], default="auto")
    parser.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    args.rates = [int(r) for r in args.rates.split(",")]
    db = int(urlsplit(args.redis_url).path.lstrip("/") or 0)
    if db in FORBIDDEN_REDIS_DBS:
        parser.error(f"--redis-url points at Redis database {db}; the bench keeps off databases 0 and 15")
    return args


def configure(args: argparse.Namespace):
    """Set the environment Django reads and create the database; return (backend, cleanup)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashsale.settings.base")
    os.environ["FLASHSALE_REDIS_PREFIX"] = REDIS_PREFIX
    os.environ["REDIS_URL"] = args.redis_url
    os.environ["DJANGO_DEBUG"] = "false"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    backend = args.db
    if backend in ("auto", "postgres"):
        import psycopg
        from psycopg import sql

        try:
            with psycopg.connect(args.pg_url, autocommit=True, connect_timeout=3) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(PG_BENCH_DB)))
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(PG_BENCH_DB)))
        except psycopg.OperationalError as exc:
            if backend == "postgres":
                raise SystemExit(f"PostgreSQL does not answer: {exc}") from exc
            backend = "sqlite"
        else:
            os.environ["DATABASE_URL"] = urlsplit(args.pg_url)._replace(path=f"/{PG_BENCH_DB}").geturl()

            def drop_pg() -> None:
                from django.db import connections

                connections.close_all()
                with psycopg.connect(args.pg_url, autocommit=True) as conn:
                    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(PG_BENCH_DB)))

            return "postgres", drop_pg
    tmp = tempfile.mkdtemp(prefix="flashsale-bench-payments-")
    os.environ["DATABASE_URL"] = f"sqlite:///{tmp}/bench.sqlite3"
    return "sqlite", lambda: shutil.rmtree(tmp, ignore_errors=True)


def start_localstripe() -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, str(LOCALSTRIPE_SERVER), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, f"http://127.0.0.1:{port}"
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise SystemExit("localstripe did not start") from None
            time.sleep(0.05)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def max_per_window(stamps: list[float], window: float = 1.0) -> int:
    stamps = sorted(stamps)
    best, start = 0, 0
    for end, t in enumerate(stamps):
        while t - stamps[start] > window:
            start += 1
        best = max(best, end - start + 1)
    return best


def in_threads(n: int, work) -> None:
    from django.db import connections

    def target(i: int) -> None:
        try:
            work(i)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def make_drop(slug: str, quantity: int, rate: int):
    from django.utils import timezone

    from inventory import services as inventory_services

    now = timezone.now()
    drop = inventory_services.drop_schedule(
        slug=slug,
        title=slug,
        price=Decimal("129.00"),
        quantity=quantity,
        starts_at=now - timedelta(seconds=1),
        prequeue_opens_at=now - timedelta(seconds=2),
        admission_rate=rate,
        checkout_window=600,
        # Stripe's test cards all share one card fingerprint: every bench shopper pays with "the same card".
        max_accounts_per_card=quantity,
    )
    type(drop).objects.filter(pk=drop.pk).update(admitted_cap_multiple=1000)
    drop.refresh_from_db()
    return drop


def authorize_all(drop, shoppers, threads: int) -> float:
    from payments import services

    chunks = [shoppers[i::threads] for i in range(threads)]
    started = time.perf_counter()
    in_threads(
        threads,
        lambda i: [
            services.authorization_authorize(drop=drop, shopper=s, payment_method="pm_card_visa") for s in chunks[i]
        ],
    )
    return time.perf_counter() - started


def fresh_localstripe() -> subprocess.Popen:
    """Start a new localstripe and point Stripe at it, so each measurement starts from an empty store."""
    from django.conf import settings

    process, base = start_localstripe()
    settings.STRIPE_API_BASE = base
    return process


def bench_purchases(args, shoppers, rate: int) -> dict:
    drop = make_drop(f"bench-purchase-{rate}", quantity=len(shoppers), rate=rate)
    stripe_process = fresh_localstripe()
    try:
        return _bench_purchases(args, shoppers, rate, drop)
    finally:
        stripe_process.terminate()
        stripe_process.wait(timeout=10)


def _bench_purchases(args, shoppers, rate: int, drop) -> dict:
    from django.contrib.auth import get_user_model

    from inventory.models import Order, OrderStatus
    from payments import services
    from payments.services import purchases
    from waitingroom import services as waitingroom_services

    capture_times: list[float] = []
    real_capture = purchases.authorization_capture

    def timed_capture(**kwargs):  # instrumentation only: how much of a purchase is the Stripe round trip
        started = time.perf_counter()
        try:
            return real_capture(**kwargs)
        finally:
            capture_times.append(time.perf_counter() - started)

    log(f"authorizing {len(shoppers)} cards at a fresh localstripe")
    auth_seconds = authorize_all(drop, shoppers, threads=8)
    purchases.authorization_capture = timed_capture
    waitingroom_services.queue_start(drop=drop)
    for shopper in shoppers:
        waitingroom_services.ticket_issue(drop=drop, shopper_id=shopper.pk)
    by_id = {s.pk: s for s in shoppers}
    admitted: queue.Queue = queue.Queue()
    latencies: list[float] = []
    since_admission: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    done = threading.Event()

    def ticker() -> None:
        waitingroom_services.queue_admit_batch(drop=drop, publish=False)  # the tick's first call only starts it
        total = 0
        while total < len(shoppers):
            time.sleep(0.05)
            result = waitingroom_services.queue_admit_batch(drop=drop, publish=False)
            now = time.perf_counter()
            for shopper_id in result.admitted:
                admitted.put((shopper_id, now))
            total += len(result.admitted)
        for _ in range(args.workers):
            admitted.put(None)

    def worker(_: int) -> None:
        while True:
            item = admitted.get()
            if item is None:
                return
            shopper_id, admitted_at = item
            started = time.perf_counter()
            try:
                outcome = services.purchase_make(drop=drop, shopper=by_id[shopper_id])
            except Exception as exc:  # the bench counts every failure and goes on
                with lock:
                    failures.append(type(exc).__name__)
                continue
            ended = time.perf_counter()
            with lock:
                latencies.append(ended - started)
                since_admission.append(ended - admitted_at)
                if outcome.order.status != OrderStatus.PAID:
                    failures.append(outcome.order.status)

    log(f"admitting at {rate}/s; {args.workers} threads buy")
    started = time.perf_counter()
    tick = threading.Thread(target=ticker)
    tick.start()
    in_threads(args.workers, worker)
    tick.join()
    done.set()
    elapsed = time.perf_counter() - started
    purchases.authorization_capture = real_capture
    paid = Order.objects.filter(drop=drop, status=OrderStatus.PAID).count()
    del get_user_model
    return {
        "rate": rate,
        "capture_p50": percentile(capture_times, 50) * 1000,
        "capture_p99": percentile(capture_times, 99) * 1000,
        "auth_seconds": auth_seconds,
        "auth_rate": len(shoppers) / auth_seconds,
        "purchases": len(latencies),
        "paid": paid,
        "failures": failures,
        "elapsed": elapsed,
        "throughput": len(latencies) / elapsed,
        "p50": percentile(latencies, 50) * 1000,
        "p90": percentile(latencies, 90) * 1000,
        "p99": percentile(latencies, 99) * 1000,
        "max": max(latencies) * 1000,
        "mean": statistics.fmean(latencies) * 1000,
        "adm_p50": percentile(since_admission, 50) * 1000,
        "adm_p99": percentile(since_admission, 99) * 1000,
    }


def bench_cancellations(args, shoppers) -> dict:

    stripe_process = fresh_localstripe()
    try:
        return _bench_cancellations(args, shoppers)
    finally:
        stripe_process.terminate()
        stripe_process.wait(timeout=10)


def _bench_cancellations(args, shoppers) -> dict:
    from django.conf import settings
    from django.utils import timezone

    from inventory.models import Drop
    from payments import services
    from payments.models import Authorization

    half = len(shoppers) // 2
    drops = [make_drop("bench-cancel-a", quantity=10, rate=500), make_drop("bench-cancel-b", quantity=10, rate=500)]
    log(f"authorizing {len(shoppers)} cards for the cancellation run")
    authorize_all(drops[0], shoppers[:half], threads=8)
    authorize_all(drops[1], shoppers[half:], threads=8)
    Drop.objects.filter(pk__in=[d.pk for d in drops]).update(ends_at=timezone.now())
    settings.STRIPE_RATE_LIMIT = args.cancel_rate
    settings.STRIPE_RATE_BURST = max(3, args.cancel_rate // 10)
    from flashsale.redis import redis_client
    from payments.redis_keys import stripe_bucket_key

    redis_client().delete(stripe_bucket_key())  # start from a full bucket, as after a quiet minute
    runs = [0, 0]

    def chain(i: int) -> None:
        while True:
            batch = services.drop_authorizations_cancel(drop_id=drops[i].pk, budget_seconds=20)
            runs[i] += 1
            if not batch.more:
                return
            time.sleep(batch.wait_ms / 1000)  # the task's countdown

    log(f"canceling {len(shoppers)} holds at {args.cancel_rate}/s from two chains")
    started = time.perf_counter()
    in_threads(2, chain)
    elapsed = time.perf_counter() - started
    stamps = [
        t.timestamp()
        for t in Authorization.objects.filter(drop__in=drops, status="canceled").values_list("updated_at", flat=True)
    ]
    return {
        "holds": len(shoppers),
        "canceled": len(stamps),
        "elapsed": elapsed,
        "rate": len(stamps) / elapsed,
        "max_window": max_per_window(stamps),
        "runs": runs[0] + runs[1],
        "limit": args.cancel_rate,
        "burst": settings.STRIPE_RATE_BURST,
    }


def main() -> None:
    args = parse_args()
    backend, cleanup = configure(args)
    os.environ["STRIPE_SECRET_KEY"] = "sk_test_localstripe"  # noqa: S105 (localstripe takes any key)
    try:
        import django

        django.setup()
        from django.conf import settings
        from django.contrib.auth import get_user_model
        from django.core.management import call_command

        from flashsale.redis import redis_client
        from waitingroom.services import shoppers_create_bulk

        call_command("migrate", verbosity=0)
        settings.STRIPE_RATE_LIMIT = 1_000_000  # the purchase run measures latency, not the limiter
        settings.STRIPE_RATE_BURST = 100_000
        sizes = [int(rate * args.seconds) for rate in args.rates]
        total = sum(sizes) + args.cancel_holds
        shoppers_create_bulk(count=total, prefix="benchpay", password="bench-password-1")  # noqa: S106
        users = list(get_user_model().objects.filter(username__startswith="benchpay").order_by("pk"))
        runs, start = [], 0
        for rate, size in zip(args.rates, sizes, strict=True):
            runs.append(bench_purchases(args, users[start : start + size], rate))
            start += size
        cancel = bench_cancellations(args, users[start:total])
        report(args, backend, runs, cancel)
    finally:
        try:
            client = redis_client()
            keys = list(client.scan_iter(match=f"{REDIS_PREFIX}:*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            cleanup()


def report(args, backend: str, runs: list[dict], c: dict) -> None:
    import django
    import stripe
    from django.db import connection

    from flashsale.redis import redis_client

    redis_version = redis_client().info("server")["redis_version"]
    db = f"PostgreSQL {connection.pg_version // 10000}" if backend == "postgres" else "SQLite (temporary file)"
    machine = f"{platform.machine()}, nproc {os.cpu_count()}; Python {platform.python_version()}"
    print(f"Machine: {machine}; Django {django.get_version()}; stripe {stripe.VERSION}; localstripe 1.15.10")
    print(f"(in memory); Redis {redis_version}; {db}. Everything shares the same CPUs.\n")
    print("Command:\n\n```")
    print(f".venv/bin/python bench/payments.py --rates {','.join(map(str, args.rates))} --seconds {args.seconds:g} \\")
    print(f"    --workers {args.workers} --cancel-holds {args.cancel_holds} --cancel-rate {args.cancel_rate}")
    print("```\n")
    print(
        "| Admitted per second | Purchases (paid) | Failures | Bought per second | p50 | p90 | p99 | max |"
        " Capture at localstripe p50 / p99 | Admission to paid p50 / p99 |"
    )
    print("| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for p in runs:
        failures = ", ".join(sorted(set(p["failures"]))) or "none"
        print(
            f"| {p['rate']} | {p['purchases']:,} ({p['paid']:,}) | {failures} | {p['throughput']:.0f} |"
            f" {p['p50']:.1f} ms | {p['p90']:.1f} ms | {p['p99']:.1f} ms | {p['max']:.1f} ms |"
            f" {p['capture_p50']:.1f} / {p['capture_p99']:.1f} ms | {p['adm_p50']:.0f} / {p['adm_p99']:.0f} ms |"
        )
    auth = statistics.fmean(p["auth_rate"] for p in runs)
    print(f"\nAuthorizations beforehand (3 Stripe calls each, 8 threads): {auth:.0f}/s.\n")
    print("| Cancellation pipeline | Value |")
    print("| --- | ---: |")
    print(f"| holds canceled | {c['canceled']:,} of {c['holds']:,} (two drops, two chains at once) |")
    print(f"| STRIPE_RATE_LIMIT / burst | {c['limit']}/s / {c['burst']} |")
    print(f"| throughput | {c['rate']:.1f}/s over {c['elapsed']:.1f} s |")
    print(f"| most cancels in any one second | {c['max_window']} |")
    print(f"| chain runs (task invocations) | {c['runs']} |")


if __name__ == "__main__":
    main()
