"""Print a drop's state, stock (Redis and database), queue, orders and authorizations."""

import json

from django.core.management.base import BaseCommand, CommandError

from flashsale.checkout.selectors import drop_status_get
from inventory import selectors


class Command(BaseCommand):
    help = "Show a drop's state, stock, queue, orders and authorizations."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **opts):
        drop = selectors.drop_get_any(slug=opts["slug"])
        if drop is None:
            raise CommandError(f"no drop {opts['slug']!r}")
        status = drop_status_get(drop=drop)
        if opts["json"]:
            self.stdout.write(json.dumps(status, indent=2))
            return
        stock, queue = status["stock"], status["queue"]
        lines = [
            f"{status['slug']}: {status['state']}, quantity {status['quantity']}",
            f"stock: redis {stock['redis'] if stock['redis'] is not None else 'missing'}, "
            f"database {stock['database']}, sold {stock['sold']}, held {stock['held']}",
            f"queue: length {queue['length']}, serving {queue['serving']}, admitted {queue['admitted']}",
            "orders: " + ", ".join(f"{k} {v}" for k, v in status["orders"].items()),
            "authorizations: " + ", ".join(f"{k} {v}" for k, v in status["authorizations"].items()),
        ]
        self.stdout.write("\n".join(lines))
