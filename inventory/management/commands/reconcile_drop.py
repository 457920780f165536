"""Compare a drop's Redis inventory with the database, then repair Redis from the database."""

import json

from django.core.management.base import BaseCommand, CommandError

from inventory import selectors, services


class Command(BaseCommand):
    help = "Compare Redis with the database for a drop and rebuild Redis from the database."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--dry-run", action="store_true", help="only compare")

    def handle(self, *args, **opts):
        drop = selectors.drop_get_any(slug=opts["slug"])
        if drop is None:
            raise CommandError(f"no drop {opts['slug']!r}")
        before = selectors.stock_get(drop=drop)
        report = {"slug": drop.slug, "before": before.as_dict(), "agree": selectors.stock_agrees(before)}
        if not opts["dry_run"]:
            services.inventory_rebuild(drop=drop)
            after = selectors.stock_get(drop=drop)
            report["after"] = after.as_dict()
            report["agree_after"] = selectors.stock_agrees(after)
        self.stdout.write(json.dumps(report, indent=2))
