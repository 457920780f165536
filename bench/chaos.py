"""The chaos run: ``manage.py simulate_drop`` twice against a stack of its own, once plain, once with faults.

Usage (from the project root):

    .venv/bin/python bench/chaos.py [--shoppers 600] [--units 40] [--faults redis,worker,stripe,web]
        [--at auto | --at redis=20,worker=35,stripe=50,web=65] [--redis-down 1] [--worker-down 5]
        [--stripe-down 5] [--max-seconds 900] [--database flashsale_chaos] [--keep-logs]

It starts, as ``make run`` does, uvicorn (``flashsale.asgi:application``, httptools, no per-message
deflate), a Celery worker, Celery beat and localstripe, plus a redis-server of its own on a free
port with no persistence, a TCP proxy (in this process) between the stack and localstripe, and a
throwaway PostgreSQL database (created, migrated and dropped). Server settings are those of the
simulate_drop section of docs/BENCHMARKS.md: RATELIMIT_ENABLE=0, POW_COST=50, STRIPE_RATE_LIMIT=1000,
DJANGO_DEBUG=0.

Then it runs the same simulation twice (same shoppers, a new drop slug each time): the plain run
(the baseline), and the chaos run, during which these faults are injected on a timer counted from
the drop's start:

- ``redis``: the private redis-server gets SIGKILL and is started again, empty, after --redis-down s
  (the broker, sessions cache, stock, queue and pub/sub all go with it);
- ``worker``: the Celery worker's process group gets SIGKILL; a new worker starts after --worker-down s;
- ``stripe``: the proxy closes its listener and resets every open connection for --stripe-down s;
- ``web``: uvicorn's process group gets SIGKILL and it is started again at once.

``--at auto`` spreads the faults over the plain run's time to sell out. The Markdown report (both
runs side by side, the fault timeline, machine facts, the command) goes to stdout, progress to
stderr. After each run it checks that the sale healed by itself: every shopper was told an outcome,
every unit was sold (when demand exceeded them), every PaymentIntent captured at localstripe is a paid or
refunded order, and ``reconcile_drop --dry-run`` finds nothing to change. The exit code is 1 if either
run oversold a unit, answered a 5xx other than the designed ``503 service_unavailable`` of an outage
(any 5xx with --strict-5xx) or failed a healing check, 2 if the stack failed. ``--json PATH`` writes
the reports, the timeline and the checks for a test to read (tests/faults/test_sale_heals.py).
Everything started is stopped on the way out, on Ctrl-C or SIGTERM too; --max-seconds bounds the
whole run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stack import ROOT, Database, Stack  # bench/ is not a package: its own directory is on sys.path

FAULTS = ("redis", "worker", "stripe", "web")
DEFAULT_FAULTS = "redis,worker,stripe,web"
LEAD_SECONDS = 2.0  # simulate_drop schedules the drop this long before its start (runner.LEAD_SECONDS)
REPORT_SECONDS = 60.0  # kept back from a run's budget for its report and the stack's stop
PREFIX = "fs"  # FLASHSALE_REDIS_PREFIX of the stack


def log(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shoppers", type=int, default=600)
    p.add_argument("--units", type=int, default=40)
    p.add_argument("--bots", type=float, default=0.02)
    p.add_argument("--declined", type=float, default=0.02)
    p.add_argument("--no-buy", type=float, default=0.05)
    p.add_argument("--concurrency", type=int, default=40, help="simulate_drop's HTTP requests in flight")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--settle", type=float, default=90.0, help="simulate_drop --settle")
    p.add_argument("--faults", default=DEFAULT_FAULTS, help=f"comma-separated, of {', '.join(FAULTS)}")
    p.add_argument(
        "--at",
        default="auto",
        help="when each fault strikes, seconds after the drop's start: fault=seconds,... "
        "(auto: spread over the plain run's time to sell out)",
    )
    p.add_argument("--redis-down", type=float, default=1.0, help="seconds between Redis's crash and its restart")
    p.add_argument("--worker-down", type=float, default=5.0, help="seconds with no Celery worker")
    p.add_argument("--stripe-down", type=float, default=5.0, help="seconds the proxy refuses Stripe calls")
    p.add_argument("--web-workers", type=int, default=1)
    p.add_argument("--max-seconds", type=float, default=900.0, help="the whole run, stack included")
    p.add_argument("--database", default="flashsale_chaos", help="PostgreSQL database to create and drop")
    p.add_argument(
        "--strict-5xx",
        action="store_true",
        help="fail on every 5xx (by default the 503 service_unavailable the API answers while Redis or the "
        "database is away, with Retry-After, is shown but does not fail the run)",
    )
    p.add_argument("--keep-logs", action="store_true", help="keep the services' logs (their directory is printed)")
    p.add_argument("--only-chaos", action="store_true", help="skip the plain run (needs --at with every fault)")
    p.add_argument("--json", metavar="PATH", help="also write the reports, the timeline and the checks as JSON here")
    args = p.parse_args(argv)
    if args.only_chaos and args.at == "auto":
        p.error("--only-chaos needs --at (auto spreads the faults over the plain run's time to sell out)")
    args.fault_list = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = set(args.fault_list) - set(FAULTS)
    if unknown:
        p.error(f"unknown faults: {', '.join(sorted(unknown))}")
    return args


# --- Reading the stack's state (psycopg and redis-py, no Django in this process) -------------------


def db_one(database: Database, sql: str, params: tuple = ()):
    import psycopg

    with psycopg.connect(f"host={database.host} port={database.port} user={database.user} dbname={database.name}") as c:
        row = c.execute(sql, params).fetchone()
    return row[0] if row else None


def drop_id_get(database: Database, slug: str) -> int | None:
    return db_one(database, "SELECT id FROM inventory_drop WHERE slug = %s", (slug,))


def redis_get(stack: Stack, fn):
    import redis

    with contextlib.suppress(redis.RedisError, OSError):
        client = redis.Redis.from_url(stack.redis.url, socket_timeout=2, socket_connect_timeout=1)
        try:
            return fn(client)
        finally:
            client.close()
    return None


def tag(drop_id: int) -> str:
    return f"{PREFIX}:{{drop:{drop_id}}}"


# --- One simulation -------------------------------------------------------------------------------


@dataclass
class Event:
    at: float  # seconds after the drop's start
    what: str


@dataclass
class Faults:
    """Injects the faults on a timer in a thread of its own and records the timeline."""

    stack: Stack
    args: argparse.Namespace
    schedule: list[tuple[str, float]]
    slug: str
    events: list[Event] = field(default_factory=list)
    starts_at: float | None = None  # monotonic
    stopping: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)
    thread: threading.Thread | None = None
    busy: set[str] = field(default_factory=set)  # services down on purpose right now
    rebuilt_after: float | None = None  # seconds from Redis's restart to the drop's stock key being back

    def start(self, starts_at: float) -> None:
        self.starts_at = starts_at
        self.thread = threading.Thread(target=self._run, name="faults", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=120)

    def note(self, what: str) -> None:
        at = time.monotonic() - (self.starts_at or time.monotonic())
        self.events.append(Event(round(at, 1), what))
        log(f"t={at:+.1f}s {what}")

    def _run(self) -> None:
        for name, offset in self.schedule:
            if self.stopping.wait(max(0.0, self.starts_at + offset - time.monotonic())):
                return
            self.busy.add({"redis": "redis", "worker": "worker", "web": "web"}.get(name, name))
            try:
                getattr(self, f"_{name}")()
            except Exception as exc:  # record it and go on with the next fault; the run reports it
                self.errors.append(f"{name}: {exc!r}")
                self.note(f"{name} fault failed: {exc!r}")
                if name == "redis" and not self.stack.redis.running:
                    self.stack.redis.start()
                if name == "stripe" and not self.stack.proxy.is_up:
                    self.stack.proxy.up()
            finally:
                self.busy.clear()

    def _redis(self) -> None:
        stack, database = self.stack, self.stack.database
        drop_id = drop_id_get(database, self.slug)
        t = tag(drop_id)
        before = redis_get(stack, lambda r: (r.hlen(f"{t}:q:entries"), r.llen(f"{t}:q:journal"),
                                             r.hlen(f"{t}:q:holds"), r.get(f"{t}:stock")))  # fmt: skip
        stack.redis.kill()
        saved = db_one(database, "SELECT count(*) FROM waitingroom_queueentry WHERE drop_id = %s", (drop_id,))
        entries, journal, cards, stock = before or (None, None, None, None)
        self.note(
            f"redis: SIGKILL (queue entries in Redis {entries}, journal not yet saved {journal}, saved rows {saved}; "
            f"cards in the holds hash {cards}; stock {int(stock) if stock is not None else None})"
        )
        time.sleep(self.args.redis_down)
        stack.redis.start()
        self.note("redis: restarted, empty")
        restarted = time.monotonic()
        while time.monotonic() - restarted < 30 and not self.stopping.is_set():
            # the rebuild writes the card holds, then the queue, then the stock (the sign that the drop is back)
            if redis_get(stack, lambda r: r.exists(f"{t}:stock")) == 1:
                self.rebuilt_after = round(time.monotonic() - restarted, 2)
                after = redis_get(stack, lambda r: (r.hlen(f"{t}:q:entries"), r.get(f"{t}:stock"),
                                                    r.hlen(f"{t}:q:holds")))  # fmt: skip
                cards_db = db_one(
                    database,
                    "SELECT count(DISTINCT shopper_id) FROM payments_authorization WHERE drop_id = %s "
                    "AND status IN ('scheduled', 'authorized', 'captured', 'requires_action', 'failed')",
                    (drop_id,),
                )
                entries, stock, cards = after or (None, None, None)
                self.note(
                    f"redis: card holds, queue and stock rebuilt {self.rebuilt_after:.1f} s after the restart "
                    f"(queue entries {entries}, stock {int(stock) if stock is not None else None}; cards in the "
                    f"holds hash {cards}, shoppers with a card in the database {cards_db})"
                )
                return
            time.sleep(0.1)
        self.note("redis: stock key NOT rebuilt within 30 s")

    def _worker(self) -> None:
        worker = self.stack.services["worker"]
        worker.kill()
        self.note("worker: SIGKILL to the Celery worker's process group")
        time.sleep(self.args.worker_down)
        worker.start()
        self.note("worker: started again")

    def _stripe(self) -> None:
        proxy = self.stack.proxy
        proxy.down()
        self.note("stripe: proxy refusing connections (open ones reset)")
        time.sleep(self.args.stripe_down)
        proxy.up()
        self.note("stripe: proxy up")

    def _web(self) -> None:
        web = self.stack.services["web"]
        web.kill()
        self.note("web: SIGKILL to uvicorn")
        web.start()
        self.stack.wait_http("/healthz")
        self.note("web: uvicorn up again (answers /healthz)")


def schedule_make(args: argparse.Namespace, sell_out: float | None) -> list[tuple[str, float]]:
    if args.at != "auto":
        at = dict(item.split("=") for item in args.at.split(","))
        return sorted(((name, float(at[name])) for name in args.fault_list), key=lambda item: item[1])
    # Spread over the plain run's sale from just before its middle (in a burst the first seconds are card
    # holds, and the queue is still empty) to its end, at least 8 s apart.
    span = sell_out or 60.0
    names = args.fault_list
    if len(names) == 1:
        return [(names[0], round(span * 0.5, 1))]
    schedule, last = [], -1e9
    for i, name in enumerate(names):
        at = max(span * (0.45 + 0.55 * i / (len(names) - 1)), last + 8.0, 3.0)
        schedule.append((name, round(at, 1)))
        last = at
    return schedule


def simulate(stack: Stack, args: argparse.Namespace, *, label: str, budget: float, faults=None) -> dict:
    """Run simulate_drop once; inject ``faults`` (a ``Faults``) from the drop's start; return its JSON report."""
    slug = f"chaos-{label}-{time.strftime('%H%M%S')}"
    timeout = max(60.0, budget - REPORT_SECONDS)
    command = [
        sys.executable, "manage.py", "simulate_drop", "--url", stack.web_url, "--shoppers", str(args.shoppers),
        "--units", str(args.units), "--bots", str(args.bots), "--declined", str(args.declined),
        "--no-buy", str(args.no_buy), "--concurrency", str(args.concurrency), "--seed", str(args.seed),
        "--prefix", "chaos", "--slug", slug, "--settle", str(args.settle), "--timeout", str(int(timeout)), "--json",
    ]  # fmt: skip
    out_path, err_path = stack.log_dir / f"simulate-{label}.json", stack.log_dir / f"simulate-{label}.log"
    if faults is not None:
        faults.slug = slug
    log(f"{label} run: simulate_drop --slug {slug} (timeout {timeout:.0f} s)")
    began = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(command, cwd=ROOT, env=stack.env(), stdout=out, stderr=err, start_new_session=True)
    try:
        starts_at = None
        reported_dead: set[str] = set()
        respawned: dict[str, int] = {}
        while proc.poll() is None:
            if starts_at is None and f"drop {slug}:" in err_path.read_text(errors="replace"):
                starts_at = time.monotonic() + LEAD_SECONDS
                if faults is not None:
                    faults.start(starts_at)
            if time.monotonic() - began > budget:
                log(f"{label} run: over its budget of {budget:.0f} s; stopping simulate_drop")
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
                break
            busy = faults.busy if faults is not None else set()
            for name in set(stack.check_alive()) - busy - reported_dead:
                reported_dead.add(name)
                log(f"{label} run: {name} died on its own; see {stack.log_dir}")
            for name, count in stack.respawns().items():
                if count > respawned.get(name, 0):
                    log(f"{label} run: {name} ended by itself and its supervisor started it again; see {stack.log_dir}")
                    respawned[name] = count
            time.sleep(0.5)
    finally:
        if faults is not None:
            faults.stop()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    report = report_read(out_path, err_path, proc.returncode, label=f"{label} run")
    report["starts_at_monotonic"] = starts_at
    log(
        f"{label} run: exit {proc.returncode}, oversold {report['oversold']}, 5xx {report['server_errors_5xx']}, "
        f"sold out at {report['time_to_sell_out_seconds']} s, {time.monotonic() - began:.0f} s"
    )
    return report


def report_read(out_path: Path, err_path: Path, returncode: int, *, label: str) -> dict:
    """simulate_drop's JSON report from its output file (with its exit code), or RuntimeError with its log's tail."""
    text = out_path.read_text(errors="replace")
    try:
        report = json.loads(text[text.index("{") :])
    except ValueError:
        tail = "\n".join(err_path.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"{label}: simulate_drop printed no report (exit {returncode}):\n{tail}") from None
    report["exit_code"] = returncode
    return report


# --- The report -------------------------------------------------------------------------------------


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_facts(stack: Stack, load_at_start: str) -> list[tuple[str, str]]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    redis_version = redis_get(stack, lambda r: r.info("server")["redis_version"]) or "?"
    pg = db_one(stack.database, "SHOW server_version") or "?"
    return [
        ("CPU", f"{model}, nproc {os.cpu_count()} (shared by every process of the stack and the simulation)"),
        ("Python", f"{platform.python_version()} ({platform.platform()})"),
        ("Redis", f"{redis_version} (private, no persistence), redis-py {version('redis')}"),
        ("PostgreSQL", f"{pg} (throwaway database {stack.database.name})"),
        (
            "Stack",
            f"uvicorn {version('uvicorn')} x{stack.web_workers} worker, Celery {version('celery')} worker "
            f"(concurrency {stack.celery_concurrency}) + ticker (ticks and holds, concurrency 2) + beat, "
            f"localstripe {version('localstripe')} "
            f"{'behind a TCP proxy' if stack.proxy is not None else '(scripts/localstripe_server.py)'}, "
            f"Django {version('Django')}",
        ),
        ("Load average", f"{load_at_start} at the start, {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end"),
    ]


OUTAGE_503 = "503 service_unavailable"


def outage_503(report: dict) -> int:
    """5xx answers that are the API's designed answer to an outage (503 service_unavailable with Retry-After)."""
    return sum(n for key, n in report["server_errors"].items() if key.endswith(OUTAGE_503))


# How a shopper's journey may end: each is an answer the shopper was given. Anything else ("not_in_queue",
# "authorization_required", "service_unavailable", "timed_out"...) is a shopper left without one.
FINAL_OUTCOMES = {
    "bought", "sold_out", "sold_out_at_checkout", "refused_as_bot", "declined", "admitted_did_not_buy",
    "admission_expired", "order_refunded", "order_failed",
}  # fmt: skip


def healing_checks(stack: Stack, report: dict) -> dict:
    """What the issue calls healed: the sale went on by itself. Returns each check's figures and its failures.

    - every shopper was told an outcome (none left waiting, none given a wrong final answer);
    - every unit was sold when more shoppers wanted one than there were units;
    - money: every PaymentIntent captured at Stripe (asked, not taken from our database) is a paid order or
      was refunded: captured = paid + refunded;
    - ``reconcile_drop --dry-run`` finds the stores in agreement (nothing for it to change).
    """
    import requests

    slug, checks, failures = report["drop"], {}, []
    left = {k: v for k, v in report["outcomes"].items() if v and k not in FINAL_OUTCOMES}
    checks["shoppers_without_outcome"] = left
    if left or report.get("unfinished_shoppers"):
        unfinished = report.get("unfinished_shoppers")
        failures.append(f"shoppers left without an outcome: {_codes(left)}; unfinished {unfinished}")
    buyers = sum((report.get("outcomes_by_role") or {}).get("buyer", {}).values())
    units = report["units_accounted"]
    checks["units_sold"] = f"{units['paid']} of {units['quantity']} ({buyers} buyers)"
    if buyers > units["quantity"] and units["paid"] != units["quantity"]:
        failures.append(f"not every unit was sold: {checks['units_sold']}")
    drop_id = drop_id_get(stack.database, slug)
    import psycopg

    database = stack.database
    with psycopg.connect(f"host={database.host} port={database.port} user={database.user} dbname={database.name}") as c:
        intents = [row[0] for row in c.execute(
            "SELECT payment_intent_id FROM payments_authorization WHERE drop_id = %s AND payment_intent_id IS NOT NULL",
            (drop_id,)).fetchall()]  # fmt: skip
        paid = c.execute("SELECT count(*) FROM inventory_order WHERE drop_id = %s AND status = 'paid'", (drop_id,))
        paid = paid.fetchone()[0]
        refunded = c.execute(
            "SELECT count(DISTINCT r.order_id) FROM payments_refund r JOIN inventory_order o ON o.id = r.order_id "
            "WHERE o.drop_id = %s", (drop_id,)).fetchone()[0]  # fmt: skip
    stripe = f"http://127.0.0.1:{stack.services['localstripe'].port}"
    captured = 0
    with requests.Session() as http:
        http.auth = ("sk_test_localstripe", "")
        for intent in intents:
            answer = http.get(f"{stripe}/v1/payment_intents/{intent}", timeout=10)
            answer.raise_for_status()
            captured += answer.json().get("status") == "succeeded"
    checks["money"] = {"captured_at_stripe": captured, "paid": paid, "refunded": refunded}
    if captured != paid + refunded:
        failures.append(f"captured {captured} at Stripe but paid {paid} + refunded {refunded}")
    reconcile = subprocess.run([sys.executable, "manage.py", "reconcile_drop", slug, "--dry-run"], cwd=ROOT,
                               env=stack.env(), capture_output=True, text=True, timeout=120)  # fmt: skip
    agree = reconcile.returncode == 0 and json.loads(reconcile.stdout).get("agree") is True
    checks["reconcile_finds_nothing"] = agree
    if not agree:
        failures.append(f"reconcile_drop --dry-run: {reconcile.stdout.strip() or reconcile.stderr.strip()}")
    checks["failures"] = failures
    return checks


def _codes(counts: dict) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in counts.items()) or "none"


def rows_build(report: dict) -> list[tuple[str, str]]:
    units, auth, joins, lat = report["units_accounted"], report["authorizations"], report["joins"], report["latency_ms"]
    unanswered = report["unanswered_requests"]
    return [
        ("Units oversold (bar: 0)", f"**{report['oversold']}**"),
        ("Orders paid", f"{report['orders_paid']} of {units['quantity']}"),
        (
            "Units: paid / pending / held / free",
            f"{units['paid']} / {units['pending']} / {units['held']} / {units['free']}"
            + ("" if units["all_accounted"] else " (NOT all accounted for)"),
        ),
        ("Holds left", str(report["holds_left"])),
        (
            "Authorizations",
            ", ".join(f"{k} {v:,}" for k, v in auth.items()) + f"; open {report['authorizations_open']}",
        ),
        (
            "Join latency p50 / p99",
            f"{report['join_latency_ms']['p50']} / {report['join_latency_ms']['p99']} ms "
            f"({joins['answered']:,} of {joins['attempted']:,} answered)",
        ),
        (
            "Card hold / purchase p50 / p99",
            " ; ".join(
                f"{lat[step]['p50_ms']:,.0f} / {lat[step]['p99_ms']:,.0f} ms"
                for step in ("authorization", "purchase")
                if step in lat
            ),
        ),
        (
            "Placed after arrival (queue entry or sold-out answer) p50 / p99 / max",
            "{p50} / {p99} / {max} ms ({count:,} shoppers)".format(**report["placed_after_arrival_ms"])
            if "placed_after_arrival_ms" in report
            else "not measured",
        ),
        (
            "Stripe calls (holds, captures, cancels, voids) / shoppers admitted",
            "{total:,} ({holds_placed:,}, {captures:,}, {cancels:,}, {voids:,}) / {admitted:,}; holding every card "
            "at once would have cost {card_held_at_once_design:,}".format(**report["stripe_calls"])
            if "stripe_calls" in report
            else "not measured",
        ),
        (
            "5xx responses",
            f"**{report['server_errors_5xx']}**"
            + (f" ({_codes(report['server_errors'])})" if report["server_errors"] else ""),
        ),
        ("of which 503 service_unavailable (outage; retried)", str(outage_503(report))),
        ("Unanswered requests", _codes(unanswered) if unanswered else "0"),
        (
            "Sent again on a new connection (answered then)",
            _codes(report.get("resent_after_dropped_connection") or {}),
        ),
        (
            "Simulator's event loop woke late by p50 / p99 / max (inside its latencies)",
            "{p50} / {p99} / {max} ms".format(
                **report.get("simulator_loop_lag_ms") or dict.fromkeys(("p50", "p99", "max"))
            ),
        ),
        (
            "Position reads missed (read again at the next poll)",
            _codes(report.get("polls_missed_read_again") or {}),
        ),
        ("Errors by code", _codes(report["errors"])),
        ("Outcomes", _codes(report["outcomes"])),
        (
            "Time to sell out",
            "did not sell out"
            if report["time_to_sell_out_seconds"] is None
            else f"{report['time_to_sell_out_seconds']} s",
        ),
        ("Database and Redis agree", "yes" if report["database_and_redis_agree"] else "**NO**"),
        ("Websockets", _codes(report["websocket"])),
        (
            "Run time (shoppers / with settling)",
            f"{report['seconds']['shoppers']} s / {report['seconds']['total_with_settling']} s",
        ),
        ("simulate_drop exit code", f"{report['exit_code']} ({'ok' if report['ok'] else 'not ok'})"),
        *_healing_rows(report.get("healing")),
    ]


def _healing_rows(healing: dict | None) -> list[tuple[str, str]]:
    if not healing:
        return []
    money = healing["money"]
    return [
        ("Shoppers left without an outcome (bar: none)", f"**{_codes(healing['shoppers_without_outcome'])}**"),
        ("Units sold", healing["units_sold"]),
        ("Captured at Stripe = paid + refunded",
         f"{money['captured_at_stripe']} = {money['paid']} + {money['refunded']}"
         + ("" if money["captured_at_stripe"] == money["paid"] + money["refunded"] else " (**NO**)")),
        ("`reconcile_drop --dry-run` finds nothing to change",
         "yes" if healing["reconcile_finds_nothing"] else "**NO**"),
    ]  # fmt: skip


def markdown(args, reports: dict[str, dict], faults: Faults | None, facts, schedule, failures: list[str]) -> str:
    lines = ["Machine:", ""]
    lines += [f"- {name}: {value}" for name, value in facts]
    lines += ["", "Command:", "", "```", shlex.join([".venv/bin/python", "bench/chaos.py", *sys.argv[1:]]), "```", ""]
    lines += [
        f"Each run: `simulate_drop --shoppers {args.shoppers} --units {args.units} --bots {args.bots} "
        f"--declined {args.declined} --no-buy {args.no_buy} --concurrency {args.concurrency} --seed {args.seed}` "
        "(burst arrival), same shoppers, a new drop each run.",
        "",
    ]
    labels = [label for label in ("plain", "chaos") if label in reports]
    rows = {label: rows_build(reports[label]) for label in labels}
    lines.append("| Figure | " + " | ".join(f"{label} run" for label in labels) + " |")
    lines.append("| --- |" + " --- |" * len(labels))
    for i, (name, _) in enumerate(rows[labels[0]]):
        lines.append(f"| {name} | " + " | ".join(rows[label][i][1] for label in labels) + " |")
    if faults is not None:
        lines += ["", "Fault timeline of the chaos run (seconds after the drop's start):", ""]
        planned = ", ".join(f"{name} at {at:g} s" for name, at in schedule)
        lines.append(f"Planned: {planned}.")
        lines.append("")
        chaos = reports.get("chaos")
        events = list(faults.events)
        if chaos and chaos.get("time_to_sell_out_seconds") is not None:
            events.append(Event(chaos["time_to_sell_out_seconds"], "drop sold out (no unit free, none held)"))
        for event in sorted(events, key=lambda e: e.at):
            lines.append(f"- {event.at:+.1f} s: {event.what}")
        done = {e.what.split(":")[0] for e in faults.events}
        skipped = [name for name, _ in schedule if name not in done]
        if skipped:
            lines.append(f"- not injected (the run ended first): {', '.join(skipped)}")
    if failures:
        lines += ["", "Failures:", ""] + [f"- {failure}" for failure in failures]
    return "\n".join(lines) + "\n"


# --- Main -------------------------------------------------------------------------------------------


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    began = time.monotonic()
    load_at_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    log_dir = Path(tempfile.mkdtemp(prefix="flashsale-chaos-"))
    stack = Stack(log_dir=log_dir, database=Database(args.database), web_workers=args.web_workers)
    reports: dict[str, dict] = {}
    failures: list[str] = []
    faults: Faults | None = None
    schedule: list[tuple[str, float]] = []
    facts: list[tuple[str, str]] = []
    code = 0
    log(f"logs in {log_dir}")
    try:
        stack.start(log)
        remaining = args.max_seconds - (time.monotonic() - began)
        if not args.only_chaos:
            reports["plain"] = simulate(stack, args, label="plain", budget=remaining / 2)
        schedule = schedule_make(args, reports["plain"]["time_to_sell_out_seconds"] if "plain" in reports else None)
        log("fault schedule: " + ", ".join(f"{name} at +{at:g} s" for name, at in schedule))
        faults = Faults(stack=stack, args=args, schedule=schedule, slug="")
        remaining = args.max_seconds - (time.monotonic() - began)
        reports["chaos"] = simulate(stack, args, label="chaos", budget=remaining - 30, faults=faults)
        failures += faults.errors
        for label, report in reports.items():
            report["healing"] = healing_checks(stack, report)
            failures += [f"{label} run: {failure}" for failure in report["healing"]["failures"]]
        facts = machine_facts(stack, load_at_start)
    except KeyboardInterrupt as exc:
        failures.append(f"interrupted ({exc or 'Ctrl-C'})")
        code = 130
    except Exception as exc:
        failures.append(f"{type(exc).__name__}: {exc}")
        log(f"failed: {exc}")
        code = 2
    finally:
        if faults is not None:
            faults.stop()
        log("stopping the stack")
        stack.stop()
        if args.keep_logs:
            log(f"logs kept in {log_dir}")
        else:
            import shutil

            shutil.rmtree(log_dir, ignore_errors=True)
    if reports:
        print(markdown(args, reports, faults, facts, schedule, failures))
    if args.json:
        timeline = [{"at": e.at, "what": e.what} for e in faults.events] if faults is not None else []
        Path(args.json).write_text(json.dumps({
            "reports": reports, "timeline": timeline, "failures": failures,
            "redis_rebuilt_after_seconds": faults.rebuilt_after if faults is not None else None,
        }, indent=2, default=str))  # fmt: skip
    if any("run: " in failure for failure in failures) and code == 0:
        code = 1  # a healing check failed
    for label, report in reports.items():
        failing_5xx = report["server_errors_5xx"] - (0 if args.strict_5xx else outage_503(report))
        if report["oversold"] or failing_5xx:
            log(f"{label} run: {report['oversold']} oversold, {failing_5xx} failing 5xx")
            code = code or 1
    if "chaos" not in reports and code == 0:
        code = 2
    log(f"done in {time.monotonic() - began:.0f} s, exit {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
