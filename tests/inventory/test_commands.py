"""The management commands of API.md: schedule_drop, create_shoppers, drop_status, reconcile_drop."""

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone

from inventory import selectors, services
from inventory.models import Drop
from inventory.redis_keys import inventory_keys
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_schedule_drop_creates_arms_and_prints_the_drop():
    out = run(
        "schedule_drop",
        "--slug",
        "air-1",
        "--title",
        "Air 1",
        "--price",
        "129.00",
        "--quantity",
        "25",
        "--starts-in",
        "600",
        "--prequeue",
        "300",
        "--rate",
        "250",
        "--limit",
        "2",
        "--checkout-window",
        "120",
    )
    printed = json.loads(out)
    assert {k: printed[k] for k in ("slug", "title", "price", "currency", "quantity", "remaining", "state")} == {
        "slug": "air-1",
        "title": "Air 1",
        "price": "129.00",
        "currency": "usd",
        "quantity": 25,
        "remaining": 25,
        "state": "scheduled",
    }
    assert (printed["admission_rate"], printed["per_customer_limit"]) == (250, 2)
    assert printed["queue"] == {"length": 0, "serving": 0}
    drop = Drop.objects.get(slug="air-1")
    assert (drop.starts_at - drop.prequeue_opens_at).total_seconds() == 300
    assert selectors.stock_get(drop=drop).redis == 25


def test_schedule_drop_again_updates_and_moves_the_stock(drop):
    buyer = UserFactory()
    services.order_mark_paid(
        order=services.order_reserve(claim=services.unit_claim(drop=drop, shopper_id=buyer.pk), shopper=buyer)
    )
    out = run("schedule_drop", "--slug", drop.slug, "--title", "Renamed", "--price", "99.50", "--quantity", "30")
    printed = json.loads(out)
    assert (printed["title"], printed["price"]) == ("Renamed", "99.50")
    assert (printed["quantity"], printed["remaining"]) == (30, 29)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--quantity", "0"], "at least 1"),
        (["--quantity", "5", "--price", "abc"], "--price must be a decimal"),
        (["--quantity", "5", "--starts-in", "-1"], "cannot be negative"),
    ],
)
def test_schedule_drop_refuses_bad_input(args, message):
    base = ["schedule_drop", "--slug", "x", "--title", "X", "--price", "10.00"]
    with pytest.raises(CommandError, match=message):
        run(*base, *args)
    assert not Drop.objects.exists()


def test_create_shoppers_is_bulk_and_leaves_existing_ones():
    existing = UserFactory(username="p1")
    out = run("create_shoppers", "--count", "50", "--prefix", "p", "--password", "pw-secret-123")
    assert "created 49 shoppers (1 existed)" in out
    User = get_user_model()
    assert User.objects.filter(username__startswith="p").count() == 50
    assert User.objects.get(username="p49").check_password("pw-secret-123")
    existing.refresh_from_db()
    assert existing.check_password("correct horse battery")


def test_drop_status_json_counts_everything(make_drop):
    drop = make_drop(quantity=3)
    buyer, failer, holder = UserFactory(), UserFactory(), UserFactory()
    services.order_mark_paid(
        order=services.order_reserve(claim=services.unit_claim(drop=drop, shopper_id=buyer.pk), shopper=buyer)
    )
    failed = services.order_reserve(claim=services.unit_claim(drop=drop, shopper_id=failer.pk), shopper=failer)
    services.order_mark_failed(order=failed, failure_code="card_declined")
    services.unit_claim(drop=drop, shopper_id=holder.pk)
    status = json.loads(run("drop_status", drop.slug, "--json"))
    assert status["slug"] == drop.slug
    assert status["state"] == "live"
    assert status["quantity"] == 3
    assert {k: status["stock"][k] for k in ("redis", "database", "sold", "held")} == {
        "redis": 1,
        "database": 2,
        "sold": 1,
        "held": 1,
    }
    assert status["queue"] == {"length": 0, "serving": 0, "admitted": 0}
    assert status["orders"] == {"paid": 1, "failed": 1, "refunded": 0}
    assert status["authorizations"] == {
        "scheduled": 0,
        "requires_action": 0,
        "authorized": 0,
        "captured": 0,
        "canceled": 0,
        "failed": 0,
    }
    text = run("drop_status", drop.slug)
    assert "stock: redis 1, database 2, sold 1, held 1" in text


def test_drop_status_unknown_slug():
    with pytest.raises(CommandError, match="no drop 'nope'"):
        run("drop_status", "nope")


def test_reconcile_drop_repairs_redis_from_the_database(drop, redis):
    buyer = UserFactory()
    services.order_mark_paid(
        order=services.order_reserve(claim=services.unit_claim(drop=drop, shopper_id=buyer.pk), shopper=buyer)
    )
    redis.delete(*inventory_keys(drop.pk).as_list())
    report = json.loads(run("reconcile_drop", drop.slug))
    assert report["before"]["redis"] is None
    assert report["agree"] is False
    assert report["after"]["redis"] == drop.quantity - 1
    assert report["agree_after"] is True
    dry = json.loads(run("reconcile_drop", drop.slug, "--dry-run"))
    assert dry["agree"] is True
    assert "after" not in dry


def test_seed_demo_rearms_a_demo_drop_that_already_started(make_drop):
    # Given a demo drop from an earlier `make run` that started (and sold a unit) long ago
    hour_ago = timezone.now() - timedelta(hours=1)
    old = make_drop(slug="demo-sneaker", starts_at=hour_ago, prequeue_opens_at=hour_ago)
    Drop.objects.filter(pk=old.pk).update(sold=1)

    # When `make run` seeds the demo again
    out = run("seed_demo")

    # Then a fresh demo drop counts down to a start a few minutes away, and the old one is kept, ended, aside
    fresh = selectors.drop_get_any(slug="demo-sneaker")
    assert fresh.pk != old.pk
    assert fresh.state_at() == "prequeue"
    assert 170 <= (fresh.starts_at - fresh.created_at).total_seconds() <= 190
    old.refresh_from_db()
    assert old.slug == f"demo-sneaker-{old.pk}"
    assert old.state_at() == "ended"
    assert old.sold == 1
    assert "/drops/demo-sneaker/" in out
    assert ".venv/bin/python manage.py" in out


def test_seed_demo_keeps_a_demo_drop_that_has_not_started(make_drop):
    # Given a demo drop still counting down
    waiting = make_drop(slug="demo-sneaker", starts_at=timezone.now() + timedelta(minutes=2))

    # When `make run` seeds the demo again, twice
    run("seed_demo")
    run("seed_demo")

    # Then it is the same drop, untouched
    assert selectors.drop_get_any(slug="demo-sneaker").pk == waiting.pk
    assert Drop.objects.count() == 1
