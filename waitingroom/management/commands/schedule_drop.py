"""Create or update a drop (and its product), arm its inventory and print it as JSON."""

import json
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from inventory import services
from inventory.errors import InventoryError
from waitingroom.selectors import drop_public_get


def _price(value: str) -> Decimal:
    try:
        return Decimal(value)
    except InvalidOperation as exc:
        raise CommandError(f"--price must be a decimal such as 129.00, not {value!r}") from exc


class Command(BaseCommand):
    help = "Create or update a drop and arm its inventory; prints the drop as JSON."

    def add_arguments(self, parser):
        parser.add_argument("--slug", required=True)
        parser.add_argument("--title", required=True)
        parser.add_argument("--price", required=True, type=_price)
        parser.add_argument("--quantity", required=True, type=int)
        parser.add_argument("--currency", default="usd")
        parser.add_argument("--description", default="")
        parser.add_argument("--starts-in", type=float, default=0, help="seconds from now until the start")
        parser.add_argument("--prequeue", type=float, default=0, help="seconds the pre-queue is open before it")
        parser.add_argument("--duration", type=float, default=None, help="seconds from the start to the end")
        parser.add_argument("--rate", type=int, default=500, help="shoppers admitted per second")
        parser.add_argument("--limit", type=int, default=1, help="units per customer")
        parser.add_argument("--checkout-window", type=int, default=300, help="seconds to buy once admitted")
        parser.add_argument(
            "--accounts-per-card",
            type=int,
            default=1,
            help="accounts that may queue with one card (Stripe's test cards share one fingerprint)",
        )

    def handle(self, *args, **opts):
        if opts["starts_in"] < 0 or opts["prequeue"] < 0:
            raise CommandError("--starts-in and --prequeue cannot be negative")
        starts_at = timezone.now() + timedelta(seconds=opts["starts_in"])
        ends_at = None if opts["duration"] is None else starts_at + timedelta(seconds=opts["duration"])
        try:
            drop = services.drop_schedule(
                slug=opts["slug"],
                title=opts["title"],
                price=opts["price"],
                quantity=opts["quantity"],
                currency=opts["currency"],
                description=opts["description"],
                starts_at=starts_at,
                prequeue_opens_at=starts_at - timedelta(seconds=opts["prequeue"]),
                ends_at=ends_at,
                admission_rate=opts["rate"],
                per_customer_limit=opts["limit"],
                checkout_window=opts["checkout_window"],
                max_accounts_per_card=opts["accounts_per_card"],
            )
        except InventoryError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(json.dumps(drop_public_get(drop=drop), indent=2))
