"""Create the demo drop and a merchandiser account for `make run`, and say how to sign in."""

import os
from datetime import timedelta
from decimal import Decimal

from django.core.management.base import BaseCommand
from django.utils import timezone

from inventory import selectors, services

DEMO_SLUG = "demo-sneaker"
MERCHANDISER = "merchandiser"
MERCHANDISER_PASSWORD = "flashsale-demo"  # noqa: S105 - a local demo account, printed on purpose


class Command(BaseCommand):
    help = (
        "Create the demo drop, starting in a few minutes (a demo drop that has already started is retired "
        "and a fresh one takes its place), and a merchandiser account."
    )

    def handle(self, *args, **opts):
        demo = selectors.drop_get_any(slug=DEMO_SLUG)
        if demo is not None and demo.starts_at <= timezone.now():
            services.drop_retire(drop=demo)
            demo = None
        if demo is None:
            starts_at = timezone.now() + timedelta(minutes=3)
            services.drop_schedule(
                slug=DEMO_SLUG,
                title="Air Flash 1 'Launch Day'",
                price=Decimal("129.00"),
                quantity=100,
                description="The demo drop: 100 pairs, one per customer.",
                starts_at=starts_at,
                prequeue_opens_at=timezone.now(),
                admission_rate=5,
                per_customer_limit=1,
                checkout_window=120,
                # Local shoppers pay with Stripe's test cards, which all share one card fingerprint.
                max_accounts_per_card=10_000,
            )
        created = services.merchandiser_ensure(username=MERCHANDISER, password=MERCHANDISER_PASSWORD)
        port = self._port()
        self.stdout.write(
            "\n".join(
                [
                    "",
                    f"flashsale is starting on http://127.0.0.1:{port}/",
                    f"  admin:  http://127.0.0.1:{port}/admin/  "
                    f"user {MERCHANDISER!r} password {MERCHANDISER_PASSWORD!r}"
                    + ("" if created else " (existing account; password unchanged)"),
                    f"  demo drop: http://127.0.0.1:{port}/drops/{DEMO_SLUG}/",
                    "  shoppers: sign up on the site, or `.venv/bin/python manage.py create_shoppers --count 10 "
                    "--prefix shopper --password <pw>`",
                    "",
                ]
            )
        )

    @staticmethod
    def _port() -> str:
        return os.environ.get("PORT", "8000")
