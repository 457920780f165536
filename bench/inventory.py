"""Claims per second: the claim service against raw EVALSHA, and two database ways for contrast.

Usage (from the project root):

    .venv/bin/python bench/inventory.py [--claims 20000] [--rounds 10] [--threads 16] [--db-stock 1000]
        [--redis-url redis://127.0.0.1:6379/14] [--db auto|postgres|sqlite]
        [--pg-url postgres://postgres@127.0.0.1:5432/postgres]

One run measures, in one process:

* ``unit_claim``: the project's claim service (``inventory.services.unit_claim``), one unit each
  for distinct shoppers against a stock big enough that every claim succeeds;
* raw EVALSHA: the same ``inventory/lua/claim.lua`` with the same keys and arguments, called
  straight through a plain redis-py client: the ceiling the service is measured against;
* both again from ``--threads`` threads;
* the naive Django way: ``--threads`` threads read ``Drop.sold`` and, while it is below the
  quantity, write ``sold = <what was read> + 1`` with no lock, counting the sales they believe
  they made (deliberately the wrong pattern: lost updates oversell);
* ``SELECT ... FOR UPDATE`` (PostgreSQL only): the same loop inside ``transaction.atomic()``;
* the conditional UPDATE ``sold = F("sold") + 1 WHERE sold < quantity``: the database guard
  the project itself uses in ``order_reserve``.

Each Redis way makes ``--claims`` claims in ``--rounds`` rounds, the ways taking turns round by
round (ABBA order) so that a noisy neighbour hits both alike; the table gives the median round
and the spread. Ratios are against raw EVALSHA, single-threaded, measured in the same run;
a database way's rate counts the sales its threads believed they made. The target is the
service within 2x of raw EVALSHA.

Isolation: Redis keys go to their own database (``--redis-url``, database 14 by default;
databases 0 and 15, the app's and the tests', are refused) under the key prefix ``fsbench``,
and are deleted afterwards. The database parts run on a throwaway PostgreSQL database
(``flashsale_bench``, created through ``--pg-url``, migrated, dropped afterwards) when
PostgreSQL answers, else on a temporary SQLite file (``--db`` forces either). The settings
module is ``flashsale.settings.base`` unless DJANGO_SETTINGS_MODULE says otherwise.
The Markdown report goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import secrets
import shlex
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
REDIS_PREFIX = "fsbench"
PG_BENCH_DB = "flashsale_bench"
WARMUP_CLAIMS = 500
FORBIDDEN_REDIS_DBS = {0, 15}  # the app's and the test suite's


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--claims", type=int, default=20_000, help="claims per Redis way (default 20000)")
    parser.add_argument("--rounds", type=int, default=10, help="rounds the Redis ways take turns in (default 10)")
    parser.add_argument("--threads", type=int, default=16, help="threads of the threaded ways (default 16)")
    parser.add_argument("--db-stock", type=int, default=1000, help="units of each database drop (default 1000)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14", help="Redis for the bench keys")
    parser.add_argument("--db", choices=["auto", "postgres", "sqlite"], default="auto", help="database (default auto)")
    parser.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432/postgres", help="PostgreSQL admin URL")
    args = parser.parse_args(argv)
    if args.claims < args.rounds or args.rounds < 1 or args.threads < 1 or args.db_stock < 1:
        parser.error("--rounds, --threads and --db-stock must be at least 1, --claims at least --rounds")
    db = int(urlsplit(args.redis_url).path.lstrip("/") or 0)
    if db in FORBIDDEN_REDIS_DBS:
        parser.error(f"--redis-url points at Redis database {db}; the bench keeps off databases 0 and 15")
    return args


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- Setup and teardown ------------------------------------------------------------------------


def pg_admin_connect(pg_url: str):
    import psycopg

    return psycopg.connect(pg_url, autocommit=True, connect_timeout=3)


def pg_create(pg_url: str) -> str:
    """Create the throwaway database (dropping a leftover one) and return its URL."""
    from psycopg import sql

    with pg_admin_connect(pg_url) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(PG_BENCH_DB)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(PG_BENCH_DB)))
    return urlsplit(pg_url)._replace(path=f"/{PG_BENCH_DB}").geturl()


def pg_drop(pg_url: str) -> None:
    from psycopg import sql

    with pg_admin_connect(pg_url) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(PG_BENCH_DB)))


def redis_clean(client) -> int:
    """Delete every key under the bench prefix; return how many went."""
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{REDIS_PREFIX}:*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            deleted += client.delete(*batch)
            batch.clear()
    if batch:
        deleted += client.delete(*batch)
    return deleted


def configure_environment(args: argparse.Namespace) -> tuple[str, Callable[[], None], str]:
    """Choose and create the database, set the environment Django reads; return (backend, cleanup, note)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashsale.settings.base")
    os.environ["FLASHSALE_REDIS_PREFIX"] = REDIS_PREFIX
    os.environ["REDIS_URL"] = args.redis_url
    os.environ.setdefault("DJANGO_DEBUG", "false")  # DEBUG keeps every query: not what production runs
    os.environ.setdefault("LOG_LEVEL", "WARNING")

    backend = args.db
    note = ""
    if backend in ("auto", "postgres"):
        try:
            pg_admin_connect(args.pg_url).close()
            backend = "postgres"
        except Exception as exc:
            if backend == "postgres":
                raise SystemExit(f"PostgreSQL does not answer at {args.pg_url}: {exc}") from exc
            reason = " ".join(str(exc).split())
            note = f"skipped: PostgreSQL ({exc.__class__.__name__}: {reason}); the database ways ran on SQLite"
            log(note)
            backend = "sqlite"
    if backend == "postgres":
        url = pg_create(args.pg_url)
        os.environ["DATABASE_URL"] = url
        return backend, lambda: pg_drop(args.pg_url), note
    tmp = tempfile.mkdtemp(prefix="flashsale-bench-")
    url = f"sqlite:///{tmp}/bench.sqlite3"
    os.environ["DATABASE_URL"] = url
    return backend, lambda: shutil.rmtree(tmp, ignore_errors=True), note


# --- Measuring ---------------------------------------------------------------------------------


@dataclass
class Row:
    way: str
    threads: int
    claims: int  # all rounds' claims for the Redis ways; sales believed made for the database ways
    rates: list[float]  # claims per second, one per round
    oversold: str = "0"
    note: str = ""

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)


def in_threads(n_threads: int, work: Callable[[int], None], prepare: Callable[[], None] | None = None) -> float:
    """Run ``work(i)`` in n threads started together; return the seconds until the last one ended.

    Each thread runs ``prepare`` (opening its connections) before the start line and closes its
    Django connections at the end.
    """
    from django.db import connections

    barrier = threading.Barrier(n_threads + 1)
    errors: list[BaseException] = []

    def target(i: int) -> None:
        try:
            if prepare is not None:
                prepare()
            barrier.wait()
            work(i)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=target, args=(i,), name=f"bench-{i}") for i in range(n_threads)]
    for thread in threads:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return elapsed


def split(total: int, parts: int) -> list[range]:
    """Cut range(total) into ``parts`` contiguous ranges of near-equal size."""
    bounds = [total * i // parts for i in range(parts + 1)]
    return [range(bounds[i], bounds[i + 1]) for i in range(parts)]


class RedisWays:
    """The service and raw EVALSHA, each on a drop of its own, with the same keys and arguments."""

    def __init__(self, args: argparse.Namespace, make_drop: Callable[[str, int], object]) -> None:
        import redis
        from django.conf import settings

        from inventory import services
        from inventory.redis_keys import inventory_keys
        from inventory.scripts import LUA_DIR

        self.services = services
        self.args = args
        self.hold_ms = int(settings.INVENTORY_HOLD_SECONDS * 1000)
        self.raw = redis.Redis.from_url(args.redis_url)
        self.source = (LUA_DIR / "claim.lua").read_text()
        self.sha = self.raw.script_load(self.source)
        self.reloads = 0  # NOSCRIPT answers seen by the raw loop
        per_drop = args.claims + WARMUP_CLAIMS + 10
        self.drops = {
            name: make_drop(f"bench-{name}", per_drop)
            for name in ("service-1", "raw-1", f"service-{args.threads}", f"raw-{args.threads}")
        }
        self.keys = {name: inventory_keys(drop.pk) for name, drop in self.drops.items()}
        self.next_shopper = dict.fromkeys(self.drops, 1)

    def shoppers(self, name: str, count: int) -> range:
        first = self.next_shopper[name]
        self.next_shopper[name] = first + count
        return range(first, first + count)

    def service_loop(self, name: str, shoppers: range) -> None:
        claim = self.services.unit_claim
        drop = self.drops[name]
        for shopper_id in shoppers:
            claim(drop=drop, shopper_id=shopper_id)  # raises unless claimed

    def raw_loop(self, name: str, shoppers: range) -> None:
        from redis.exceptions import NoScriptError

        keys = self.keys[name]
        evalsha, sha, hold_ms = self.raw.evalsha, self.sha, self.hold_ms
        limit = self.drops[name].per_customer_limit
        stock, holds, expiry, customers = keys.stock, keys.holds, keys.expiry, keys.customers
        for shopper_id in shoppers:
            claim_id = secrets.token_hex(12)
            try:
                code, _ = evalsha(sha, 4, stock, holds, expiry, customers, claim_id, shopper_id, 1, limit, hold_ms)
            except NoScriptError:
                # Another client flushed the server's script cache (the test suite does): load
                # again and retry once, as redis-py's Script does for the service.
                self.reloads += 1
                sha = self.sha = self.raw.script_load(self.source)
                code, _ = evalsha(sha, 4, stock, holds, expiry, customers, claim_id, shopper_id, 1, limit, hold_ms)
            if code != 1:
                raise RuntimeError(f"raw claim answered {code}")

    def run(self, way: str, threads: int, claims: int) -> float:
        """One round of ``claims`` claims; return claims per second."""
        name = f"{way}-{threads}"
        loop = self.service_loop if way == "service" else self.raw_loop
        shoppers = self.shoppers(name, claims)
        if threads == 1:
            started = time.perf_counter()
            loop(name, shoppers)
            elapsed = time.perf_counter() - started
        else:
            parts = [shoppers[r.start : r.stop] for r in split(len(shoppers), threads)]
            from flashsale.redis import redis_client

            elapsed = in_threads(threads, lambda i: loop(name, parts[i]), prepare=redis_client)
        return claims / elapsed

    def warm_up(self) -> None:
        for name in self.drops:
            loop = self.service_loop if name.startswith("service") else self.raw_loop
            loop(name, self.shoppers(name, WARMUP_CLAIMS))

    def check(self) -> None:
        """Every claim must have taken exactly one unit."""
        for name, drop in self.drops.items():
            taken = self.next_shopper[name] - 1
            stock = int(self.raw.get(self.keys[name].stock))
            if stock != drop.quantity - taken or self.raw.hlen(self.keys[name].holds) != taken:
                raise RuntimeError(f"{name}: stock {stock} after {taken} claims on {drop.quantity}")


def db_way(way: str, drop_id: int, threads: int) -> tuple[float, int, int]:
    """Sell a drop's units from threads; return (seconds, sales the threads believed made, IntegrityErrors)."""
    from django.db import IntegrityError, connection, transaction
    from django.db.models import F

    from inventory.models import Drop

    believed = [0] * threads
    integrity_errors = [0] * threads
    row = Drop.objects.filter(pk=drop_id)

    def naive(i: int) -> None:
        while True:
            sold, quantity = row.values_list("sold", "quantity").get()
            if sold >= quantity:
                return
            try:
                row.update(sold=sold + 1)  # the wrong pattern: writes back what it read, plus one
                believed[i] += 1
            except IntegrityError:
                integrity_errors[i] += 1

    def for_update(i: int) -> None:
        while True:
            with transaction.atomic():
                sold, quantity = row.select_for_update().values_list("sold", "quantity").get()
                if sold >= quantity:
                    return
                row.update(sold=sold + 1)
            believed[i] += 1

    def conditional(i: int) -> None:
        while row.filter(sold__lt=F("quantity")).update(sold=F("sold") + 1):
            believed[i] += 1

    work = {"naive": naive, "for_update": for_update, "conditional": conditional}[way]
    # A lambda: ``connection`` must be looked up in each thread, not bound to this one's.
    elapsed = in_threads(threads, work, prepare=lambda: connection.ensure_connection())
    return elapsed, sum(believed), sum(integrity_errors)


# --- Report ------------------------------------------------------------------------------------


def machine_facts(redis_client, backend: str) -> list[tuple[str, str]]:
    import django
    import redis
    from django.db import connection

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count() or 0
    try:
        import hiredis  # noqa: F401

        parser = "hiredis"
    except ImportError:
        parser = "pure-Python parser"
    if backend == "postgres":
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            database = f"PostgreSQL {cursor.fetchone()[0]} (throwaway database {PG_BENCH_DB})"
    else:
        import sqlite3

        database = f"SQLite {sqlite3.sqlite_version} (temporary file, WAL)"
    return [
        ("CPU", f"{cpu}, nproc {nproc}"),
        ("Python", f"{platform.python_implementation()} {platform.python_version()} ({platform.platform()})"),
        ("Redis", f"{redis_client.info('server')['redis_version']} (redis-py {redis.__version__}, {parser})"),
        ("Database", database),
        ("Django", django.get_version()),
    ]


def command_line() -> str:
    python = Path(sys.executable)
    try:
        python_shown = str(python.relative_to(Path.cwd()))
    except ValueError:
        python_shown = str(python)
    return shlex.join([python_shown, *sys.argv])


def report(rows: list[Row], facts: list[tuple[str, str]], notes: list[str]) -> str:
    base = next(r for r in rows if r.way.startswith("raw EVALSHA") and r.threads == 1).rate
    lines = ["Machine:", ""]
    lines += [f"- {name}: {value}" for name, value in facts]
    lines += ["", "Command:", "", "```", command_line(), "```", ""]
    lines += [
        "| Way | Threads | Claims | Claims/s (median) | Spread | vs raw EVALSHA, 1 thread | Oversold |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        spread = f"{min(r.rates):,.0f} to {max(r.rates):,.0f}" if len(r.rates) > 1 else "one run"
        claims = f"{r.claims:,} in {len(r.rates)} rounds" if len(r.rates) > 1 else f"{r.claims:,}"
        way = f"{r.way} ({r.note})" if r.note else r.way
        lines.append(
            f"| {way} | {r.threads} | {claims} | {r.rate:,.0f} | {spread} | {r.rate / base:.2f}x | {r.oversold} |"
        )
    lines.append("")
    for threads in sorted({r.threads for r in rows if r.way == "unit_claim (service)"}):
        service = next(r for r in rows if r.way == "unit_claim (service)" and r.threads == threads)
        raw = next(r for r in rows if r.way.startswith("raw EVALSHA") and r.threads == threads)
        factor = raw.rate / service.rate
        verdict = "within" if factor <= 2 else "NOT within"
        lines.append(
            f"- {threads} thread{'s' if threads > 1 else ''}: the service takes {factor:.2f}x the time of raw "
            f"EVALSHA per claim ({verdict} the 2x target)."
        )
    lines += [f"- {note}" for note in notes]
    return "\n".join(lines)


# --- Main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # ``python bench/inventory.py`` puts bench/ first on the path, where this file would shadow the app.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH_DIR]
    sys.path.insert(0, str(ROOT))

    import redis

    raw_admin = redis.Redis.from_url(args.redis_url)
    raw_admin.ping()
    leftover = redis_clean(raw_admin)
    if leftover:
        log(f"deleted {leftover} leftover {REDIS_PREFIX}:* keys")
    backend, db_cleanup, db_note = configure_environment(args)
    try:
        return run(args, backend, raw_admin, db_note)
    finally:
        from django.db import connections

        connections.close_all()
        db_cleanup()
        redis_clean(raw_admin)
        log("cleaned up: bench Redis keys and the bench database")


def run(args: argparse.Namespace, backend: str, raw_admin, db_note: str) -> int:
    import django

    django.setup()

    from decimal import Decimal

    from django.core.management import call_command
    from django.utils import timezone

    from flashsale.redis import redis_client
    from inventory import services
    from inventory.models import Drop

    pool_kwargs = redis_client().connection_pool.connection_kwargs
    bench_kwargs = raw_admin.connection_pool.connection_kwargs
    if (pool_kwargs.get("host"), pool_kwargs.get("port"), pool_kwargs.get("db")) != (
        bench_kwargs.get("host"),
        bench_kwargs.get("port"),
        bench_kwargs.get("db"),
    ):
        raise SystemExit(f"the settings' Redis ({pool_kwargs}) is not --redis-url; refusing to run")

    log(f"migrating the bench database ({backend})")
    call_command("migrate", verbosity=0, interactive=False)

    def make_drop(slug: str, quantity: int) -> Drop:
        return services.drop_schedule(
            slug=slug, title=slug, price=Decimal("10.00"), quantity=quantity, starts_at=timezone.now()
        )

    rows: list[Row] = []
    notes: list[str] = [db_note] if db_note else []

    ways = RedisWays(args, make_drop)
    ways.warm_up()
    results: dict[tuple[str, int], list[float]] = {}
    for threads in (1, args.threads) if args.threads > 1 else (1,):
        for round_no, claims in enumerate(len(r) for r in split(args.claims, args.rounds)):
            order = ("service", "raw") if round_no % 2 == 0 else ("raw", "service")
            for way in order:
                rate = ways.run(way, threads, claims)
                results.setdefault((way, threads), []).append(rate)
                log(f"round {round_no + 1}/{args.rounds}: {way:7} x {threads:2} threads: {rate:,.0f} claims/s")
    ways.check()
    if ways.reloads:
        notes.append(f"raw EVALSHA met {ways.reloads} NOSCRIPT answer(s): another client flushed the script cache")
    for (way, threads), rates in sorted(results.items(), key=lambda item: (item[0][1], item[0][0] != "service")):
        label = "unit_claim (service)" if way == "service" else "raw EVALSHA (redis-py)"
        rows.append(Row(way=label, threads=threads, claims=args.claims, rates=rates))

    db_label = "PostgreSQL" if backend == "postgres" else "SQLite"
    db_ways = [("naive", f"naive read-then-UPDATE, {db_label}")]
    if backend == "postgres":
        db_ways.append(("for_update", "SELECT ... FOR UPDATE, PostgreSQL"))
    else:
        notes.append("skipped: SELECT ... FOR UPDATE needs PostgreSQL (SQLite has no row locks)")
    db_ways.append(("conditional", f"conditional UPDATE with F(), {db_label}"))
    for way, label in db_ways:
        drop = make_drop(f"bench-db-{way}", args.db_stock)
        elapsed, believed, integrity_errors = db_way(way, drop.pk, args.threads)
        drop.refresh_from_db()
        over = believed - drop.quantity
        oversold = f"{max(over, 0):,} (believed {believed:,} sold of {drop.quantity:,}; row says {drop.sold:,})"
        if way == "naive" or integrity_errors:
            oversold += f"; IntegrityErrors: {integrity_errors:,}"
        rows.append(
            Row(
                way=label,
                threads=args.threads,
                claims=believed,
                rates=[believed / elapsed],
                oversold=oversold,
                note=f"{drop.quantity:,} units",
            )
        )
        log(f"{label}: {believed / elapsed:,.0f} sales/s, believed {believed} of {drop.quantity}")

    print(report(rows, machine_facts(raw_admin, backend), notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
