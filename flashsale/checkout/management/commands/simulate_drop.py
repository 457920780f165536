"""Simulate a drop end to end over HTTP and websockets against a running server; print the report."""

import json
import sys
from argparse import RawDescriptionHelpFormatter
from dataclasses import fields

from django.core.management.base import BaseCommand, CommandError

from flashsale.simulation import SimulationConfig, report_format, simulation_run
from flashsale.simulation.runner import SimulationError

DESCRIPTION = """\
Schedule a drop, create shoppers, then send every shopper through the drop over real HTTP and
websockets to the server at --url: sign in, authorize the card, solve the proof-of-work, join,
wait on the websocket (polling when it drops), buy when admitted. Prints the report (oversold,
orders, holds, authorizations, join latency, errors by code, admission rate, time to sell out,
database vs Redis) and exits 1 if a unit was oversold, a 5xx came back or a request got no answer.

This command runs in the server's environment (same DATABASE_URL, REDIS_URL, DJANGO_SECRET_KEY):
it schedules the drop, creates the shoppers and reads the figures itself. Against `make run` as it
comes it simulates up to 60 shoppers (the per-address rate limits; it refuses more, saying so).
For larger runs, start the server (and run this command) with
  RATELIMIT_ENABLE=0     every shopper comes from this one address (or use --forwarded-for behind
                         TRUSTED_PROXY_COUNT=1)
  POW_COST=50            the proof-of-work is the shoppers' CPU, here all on this machine
  STRIPE_RATE_LIMIT=N    card holds and captures go at the Stripe rate (default 25/s, Stripe's own);
                         a larger N is what a shop with a raised Stripe limit gets
Without Celery beat and workers next to the server, pass --tick-locally.
"""


class Command(BaseCommand):
    help = "Simulate a drop end to end against a running server (see --help)."

    def add_arguments(self, parser):
        parser.description = DESCRIPTION
        parser.formatter_class = RawDescriptionHelpFormatter
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="the running server")
        parser.add_argument("--shoppers", type=int, default=100_000)
        parser.add_argument("--units", type=int, default=1_000)
        parser.add_argument(
            "--arrival",
            choices=["burst", "prequeue"],
            default="burst",
            help="burst: everyone within one second of the start; prequeue: spread over --prequeue",
        )
        parser.add_argument(
            "--prequeue", dest="prequeue_seconds", type=float, default=30.0, help="seconds of the pre-queue window"
        )
        parser.add_argument(
            "--burst", dest="burst_seconds", type=float, default=1.0,
            help="with --arrival burst: everyone arrives within this many seconds of the start",
        )  # fmt: skip
        parser.add_argument("--bots", type=float, default=0.0, help="share of scripted bots (0.0-1.0)")
        parser.add_argument("--declined", type=float, default=0.0, help="share of shoppers whose card is declined")
        parser.add_argument("--no-buy", type=float, default=0.0, help="share of shoppers who never buy")
        parser.add_argument("--rate", type=int, default=500, help="the drop's admissions per second")
        parser.add_argument("--checkout-window", type=int, default=60, help="seconds an admitted shopper may buy")
        parser.add_argument(
            "--cap-multiple",
            type=int,
            default=3,
            help="the drop's cap: admitted shoppers who have not finished, at most this many times the free stock",
        )
        parser.add_argument(
            "--accounts-per-card",
            type=int,
            default=0,
            help="the drop's accounts per card (0: all shoppers; Stripe's test cards share one fingerprint)",
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            default=500,
            help="HTTP requests in flight at most, in each of two lanes "
            "(position reads of shoppers without a socket; everything else)",
        )
        parser.add_argument(
            "--sockets",
            type=int,
            default=10_000,
            help="websockets open at most (beyond them shoppers poll); capped by the open-files limit",
        )
        parser.add_argument("--timeout", type=float, default=1800.0, help="seconds after which everything stops")
        parser.add_argument(
            "--settle",
            type=float,
            default=90.0,
            help="seconds to wait after the shoppers for holds and card authorizations to settle",
        )
        parser.add_argument(
            "--tick-locally",
            action="store_true",
            help="do Celery beat's work here (admission tick every second, hold sweep, cancelling "
            "losers' card holds), for a server running without Celery",
        )
        parser.add_argument(
            "--sign-in",
            choices=["session", "password"],
            default="session",
            help="session: write signed-in sessions ahead (no password hash per shopper); "
            "password: POST /api/session with the password",
        )
        parser.add_argument(
            "--forwarded-for",
            action="store_true",
            help="give shoppers their own X-Forwarded-For address (bots share three); rate limits "
            "then apply per shopper address if the server has TRUSTED_PROXY_COUNT=1",
        )
        parser.add_argument("--slug", default="", help="the drop's slug (default sim-<date>-<time>)")
        parser.add_argument("--prefix", default="sim", help="shopper usernames: <prefix>N, bots <prefix>botN")
        parser.add_argument("--seed", type=int, default=None, help="seed of the roles and arrival times")
        parser.add_argument(
            "--solvers",
            type=int,
            default=0,
            help="processes solving proofs-of-work (0: in the event loop, fine at a low POW_COST)",
        )
        parser.add_argument("--json", action="store_true", help="print the report as JSON")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    def handle(self, *args, **opts):
        try:
            names = {f.name for f in fields(SimulationConfig)} - {"progress"}
            config = SimulationConfig(**{name: opts[name] for name in names}, progress=not opts["no_progress"])
            report = simulation_run(config, progress=sys.stderr)
        except (ValueError, SimulationError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps(report, indent=2) if opts["json"] else report_format(report))
        if not report["ok"]:
            raise CommandError("the simulation failed: units oversold, 5xx responses or unanswered requests")
