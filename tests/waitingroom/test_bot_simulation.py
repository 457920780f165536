"""200 scripted bots that share devices, cards and addresses compete with 200 honest shoppers for 50 units.

The bots come first (they are faster) and half of them hide every automation tell. Each shopper's card
hold is recorded as the checkout records it once placed (the queue's view); everything else is the real
join API and the real admission ticks; admitted shoppers buy in the order they were admitted. (Accounts
per card are counted when holds are placed: tests/checkout.)
"""

import json
from collections import Counter
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from inventory import services as inventory_services
from inventory.errors import InventoryError
from inventory.models import Order, OrderStatus
from tests.conftest import BROWSER_USER_AGENT
from tests.factories import DropFactory
from waitingroom import selectors, services
from waitingroom.redis_keys import queue_keys
from waitingroom.scripts import HoldState

from .support import authorize, solved

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

UNITS, BOTS, HONEST = 50, 200, 200


def make_shoppers(prefix, count, *, age):
    User = get_user_model()
    joined = timezone.now() - age
    User.objects.bulk_create([User(username=f"{prefix}{i}", password="!", date_joined=joined) for i in range(count)])
    return list(User.objects.filter(username__startswith=prefix).order_by("pk"))


def join(drop, user, *, ip, device, card, user_agent, signals, redis, cards):
    # The card's hold as the hold scheduler leaves it: placed, or refused because another account holds the
    # same card (one account per card here; the real check is tested in tests/checkout).
    state = HoldState.READY if cards[card] < drop.max_accounts_per_card else HoldState.failed(0, "card_limit")
    cards[card] += 1
    authorize(redis, drop, user, state)
    client = Client(HTTP_USER_AGENT=user_agent, REMOTE_ADDR=ip)
    client.force_login(user)
    challenge = client.get(f"/api/drops/{drop.slug}/challenge").json()
    body = {"altcha": solved(challenge), "fingerprint": device, "signals": signals}
    response = client.post(f"/api/drops/{drop.slug}/queue", json.dumps(body), content_type="application/json")
    return response.status_code, response.json()


def test_honest_shoppers_get_at_least_ninety_percent_of_the_units(redis, settings):
    settings.POW_COST = 200
    drop = DropFactory(slug="hyped", quantity=UNITS, admission_rate=1000, checkout_window=600)
    inventory_services.drop_arm(drop=drop)
    services.queue_start(drop=drop)
    bots = make_shoppers("bot", BOTS, age=timedelta(days=3))
    honest = make_shoppers("human", HONEST, age=timedelta(days=300))

    answers, cards = Counter(), Counter()
    for i, bot in enumerate(bots):
        naive = i % 2 == 0
        status, body = join(
            drop, bot, redis=redis, cards=cards,
            ip=f"203.0.113.{i % 4}",  # four addresses
            device=f"bot-device-{i % 10:02d}",  # ten devices
            card=f"bot-card-{i % 5}",  # five cards
            user_agent="python-requests/2.32" if naive else BROWSER_USER_AGENT,
            signals={"webdriver": True, "headless": True} if naive else {"webdriver": False, "languages": 2},
        )  # fmt: skip
        answers[("bot", status, body.get("error", {}).get("code", "queued"))] += 1
    for i, human in enumerate(honest):
        status, body = join(
            drop, human, redis=redis, cards=cards,
            ip=f"198.51.100.{i % 20}",  # twenty homes and offices behind NAT
            device=f"human-device-{i:03d}", card=f"human-card-{i:03d}",
            user_agent=BROWSER_USER_AGENT, signals={"webdriver": False, "headless": False, "languages": 2},
        )  # fmt: skip
        answers[("human", status, body.get("error", {}).get("code", "queued"))] += 1

    # Every honest shopper got in; bots only as far as their shared cards allow (five cards, five holds).
    assert answers[("human", 201, "queued")] == HONEST
    queued_bots = answers[("bot", 201, "queued")]
    assert sum(n for (who, status, _), n in answers.items() if who == "bot" and status == 403) >= BOTS - queued_bots
    states = redis.hgetall(queue_keys(drop.pk).holds)
    admissible_bots = [bot for bot in bots if states.get(str(bot.pk).encode()) == b"r"]
    assert len(admissible_bots) <= 5

    # Admission at the drop's rate; everyone admitted buys at once, in order, until the stock is gone.
    is_bot = {u.pk for u in bots}
    now = 1_800_000_000_000
    services.queue_admit_batch(drop=drop, now_ms=now, publish=False)
    second = 0
    while Order.objects.filter(drop=drop, status=OrderStatus.PAID).count() < UNITS and second < 60:
        second += 1
        tick = services.queue_admit_batch(drop=drop, now_ms=now + second * 100, publish=False)
        for shopper_id in tick.admitted:
            try:
                claim = inventory_services.unit_claim(drop=drop, shopper_id=shopper_id)
            except InventoryError:
                continue
            order = inventory_services.order_reserve(claim=claim, shopper=get_user_model()(pk=shopper_id))
            inventory_services.order_mark_paid(order=order)
            services.admission_complete(drop=drop, shopper_id=shopper_id)

    buyers = list(Order.objects.filter(drop=drop, status=OrderStatus.PAID).values_list("shopper_id", flat=True))
    honest_units = sum(1 for shopper in buyers if shopper not in is_bot)
    assert len(buyers) == UNITS
    assert honest_units / UNITS >= 0.9, f"bots bought {UNITS - honest_units} of {UNITS}"
    stats = selectors.bot_stats_get(drop_id=drop.pk)
    assert set(stats.blocked) >= {"automation_user_agent", "webdriver"}
