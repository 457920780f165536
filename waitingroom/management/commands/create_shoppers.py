"""Create shoppers P0 .. P{N-1} quickly (bulk); existing ones are left as they are."""

import time

from django.core.management.base import BaseCommand, CommandError

from waitingroom.services import shoppers_create_bulk


class Command(BaseCommand):
    help = "Create shoppers <prefix>0 .. <prefix>{count-1} in bulk with one password."

    def add_arguments(self, parser):
        parser.add_argument("--count", type=int, required=True)
        parser.add_argument("--prefix", required=True)
        parser.add_argument("--password", required=True)

    def handle(self, *args, **opts):
        if opts["count"] < 0:
            raise CommandError("--count cannot be negative")
        started = time.monotonic()
        created = shoppers_create_bulk(count=opts["count"], prefix=opts["prefix"], password=opts["password"])
        self.stdout.write(
            f"created {created} shoppers ({opts['count'] - created} existed) in {time.monotonic() - started:.1f}s"
        )
