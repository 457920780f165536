"""Card holds placed in queue order: the scheduler, admission that waits only for the holds it needs, the herd
at the start, captures before holds, the accounts-per-card limit. Real localstripe, Redis and database."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from flashsale.checkout import services as checkout_services
from payments.models import Authorization
from payments.stripe_client import stripe_client
from tests.conftest import BROWSER_USER_AGENT, serving_asgi
from tests.payments.conftest import authorize, post_json
from tests.security.conftest import csrf_pair, session_for, veteran
from tests.waitingroom.support import solved
from waitingroom import selectors as queue_selectors
from waitingroom import services as queue_services
from waitingroom.redis_keys import queue_keys
from waitingroom.scripts import HoldState

pytestmark = pytest.mark.django_db(transaction=True)

NOW = 1_900_000_000_000  # ms: tick clocks the tests set


def in_line(drop, login, count, card="pm_card_visa"):
    """``count`` shoppers give a card and join, in this order (tickets 1..count)."""
    queue_services.queue_start(drop=drop)
    clients = []
    for _ in range(count):
        client = login()
        assert authorize(client, drop, card).status_code == 202
        queue_services.ticket_issue(drop=drop, shopper_id=client.shopper.pk)
        clients.append(client)
    return clients


def place(drop):
    return checkout_services.holds_place_due(drop=drop, budget_seconds=20)


def statuses(drop, clients):
    by_shopper = dict(Authorization.objects.filter(drop=drop).values_list("shopper_id", "status"))
    return [by_shopper[client.shopper.pk] for client in clients]


def set_holds(redis, drop, states: dict[int, str]):
    redis.hset(queue_keys(drop.pk).holds, mapping=states)


def test_holds_are_placed_in_ticket_order_only_a_few_seconds_ahead_of_admission(make_drop, login):
    # Given ten shoppers in line for a drop admitting two a second (holds three seconds ahead: six)
    drop = make_drop(quantity=100, admission_rate=2, max_accounts_per_card=100)
    clients = in_line(drop, login, 10)

    # When the scheduler runs
    run = place(drop)

    # Then the holds of tickets 1-6 are placed, one after the other in ticket order; 7-10 wait
    assert (run.due, run.placed, run.failed) == (6, 6, 0)
    assert statuses(drop, clients) == ["authorized"] * 6 + ["scheduled"] * 4
    placed = Authorization.objects.filter(drop=drop, status="authorized").order_by("updated_at", "pk")
    assert [a.shopper_id for a in placed] == [client.shopper.pk for client in clients[:6]]

    # When two are admitted and the scheduler runs again, the window moves on by two
    queue_services.queue_admit_batch(drop=drop, now_ms=NOW, publish=False)
    tick = queue_services.queue_admit_batch(drop=drop, now_ms=NOW + 1000, publish=False)
    assert tick.admitted == [clients[0].shopper.pk, clients[1].shopper.pk]
    place(drop)
    assert statuses(drop, clients) == ["authorized"] * 8 + ["scheduled"] * 2


def test_admission_waits_for_a_hold_not_yet_placed_and_admits_only_placed_holds(make_drop, redis):
    # Given three tickets: the first's hold is not placed yet, the others' are
    drop = make_drop(admission_rate=10)
    queue_services.queue_start(drop=drop)
    for shopper in (1, 2, 3):
        set_holds(redis, drop, {shopper: HoldState.SCHEDULED if shopper == 1 else HoldState.READY})
        queue_services.ticket_issue(drop=drop, shopper_id=shopper)

    # When ticks run, admission stops at ticket 1: holds are placed in ticket order, so it is next
    queue_services.queue_admit_batch(drop=drop, now_ms=NOW, publish=False)
    tick = queue_services.queue_admit_batch(drop=drop, now_ms=NOW + 1000, publish=False)
    assert (tick.admitted, tick.serving) == ([], 0)

    # Then once its hold is placed, all three are admitted in ticket order
    set_holds(redis, drop, {1: HoldState.READY})
    tick = queue_services.queue_admit_batch(drop=drop, now_ms=NOW + 2000, publish=False)
    assert (tick.admitted, tick.tickets, tick.serving) == ([1, 2, 3], [1, 2, 3], 3)


def test_a_hold_being_placed_delays_only_its_own_shopper_who_keeps_the_place(make_drop, redis):
    # Given ticket 1's hold is being placed (Stripe is slow) and tickets 2 and 3 are ready
    drop = make_drop(admission_rate=2)
    queue_services.queue_start(drop=drop)
    for shopper in (1, 2, 3):
        set_holds(redis, drop, {shopper: HoldState.placing(NOW) if shopper == 1 else HoldState.READY})
        queue_services.ticket_issue(drop=drop, shopper_id=shopper)

    # When a tick admits two: tickets 2 and 3 go; ticket 1 waits at the head, "next"
    queue_services.queue_admit_batch(drop=drop, now_ms=NOW, publish=False)
    tick = queue_services.queue_admit_batch(drop=drop, now_ms=NOW + 1000, publish=False)
    assert (tick.admitted, tick.serving) == ([2, 3], 3)
    entry = queue_selectors.entry_get(drop=drop, shopper_id=1)
    assert (entry.status, entry.ticket, entry.position) == ("waiting", 1, 1)

    # When its hold is placed, it is admitted at the next tick, before anyone who joined later
    set_holds(redis, drop, {1: HoldState.READY, 4: HoldState.READY})
    queue_services.ticket_issue(drop=drop, shopper_id=4)
    tick = queue_services.queue_admit_batch(drop=drop, now_ms=NOW + 1500, publish=False)
    assert (tick.admitted, tick.tickets) == ([1], [1])
    tick = queue_services.queue_admit_batch(drop=drop, now_ms=NOW + 2000, publish=False)
    assert tick.admitted == [4]


def test_without_a_new_card_within_the_checkout_window_the_turn_passes(make_drop, redis):
    # Given ticket 1 whose payment is required (declined) and ticket 2 ready
    drop = make_drop(admission_rate=10, checkout_window=60)
    queue_services.queue_start(drop=drop)
    set_holds(redis, drop, {1: HoldState.failed(NOW, "card_declined"), 2: HoldState.READY})
    for shopper in (1, 2):
        queue_services.ticket_issue(drop=drop, shopper_id=shopper)

    # When admission reaches them, ticket 2 goes; ticket 1 is told payment is required and keeps the place
    queue_services.queue_admit_batch(drop=drop, now_ms=NOW, publish=False)
    tick = queue_services.queue_admit_batch(drop=drop, now_ms=NOW + 1000, publish=False)
    assert tick.admitted == [2]
    entry = queue_selectors.entry_get(drop=drop, shopper_id=1)
    assert (entry.status, entry.decline_code, entry.position) == ("payment_required", "card_declined", 1)

    # When the whole window passes with no new card, the turn passes: told, and its card released
    tick = queue_services.queue_admit_batch(drop=drop, now_ms=NOW + 60_000, publish=False)
    assert tick.expired == [1]
    assert queue_selectors.entry_get(drop=drop, shopper_id=1).status == "expired"
    assert redis.zcard(queue_keys(drop.pk).deferred) == 0


def test_the_accounts_per_card_limit_applies_when_the_hold_is_placed(make_drop, login, redis, stripe_sdk):
    # Given two accounts in line with the same card (Stripe's test cards share one fingerprint), one allowed
    drop = make_drop(max_accounts_per_card=1)
    first, second = in_line(drop, login, 2)

    # When their holds are placed
    place(drop)

    # Then the second account is asked for another card; its hold is released at Stripe at once
    assert statuses(drop, [first, second]) == ["authorized", "failed"]
    refused = Authorization.objects.get(shopper=second.shopper)
    assert refused.failure_code == "card_limit"
    assert stripe_sdk.v1.payment_intents.retrieve(refused.payment_intent_id).status == "canceled"
    entry = second.get(f"/api/drops/{drop.slug}/queue").json()
    assert (entry["status"], entry["decline_code"]) == ("payment_required", "card_limit")
    assert queue_selectors.bot_stats_get(drop_id=drop.pk).blocked == {"card_limit": 1}


def test_captures_come_first_while_holds_spend_the_stripe_budget(make_drop, login, settings):
    # Given two admitted shoppers, many more in line, and a small Stripe budget (5 calls a second, bursts of 3)
    drop = make_drop(quantity=2, admission_rate=1000, admitted_cap_multiple=20, max_accounts_per_card=100)
    buyers = in_line(drop, login, 2)
    place(drop)
    queue_services.queue_admit_batch(drop=drop, now_ms=NOW, publish=False)
    assert len(queue_services.queue_admit_batch(drop=drop, now_ms=NOW + 1000, publish=False).admitted) == 2
    for _ in range(30):
        waiting = login()
        assert authorize(waiting, drop).status_code == 202
        queue_services.ticket_issue(drop=drop, shopper_id=waiting.shopper.pk)
    settings.STRIPE_RATE_LIMIT, settings.STRIPE_RATE_BURST = 5, 3

    # When the scheduler spends every token it may, and both buyers press Buy right after
    for _ in range(3):
        checkout_services.holds_place_due(drop=drop, budget_seconds=0.5)
    bought = [post_json(buyer, f"/api/drops/{drop.slug}/purchase") for buyer in buyers]

    # Then both captures found their token: holds leave the reserve to purchases
    assert [response.status_code for response in bought] == [201, 201]


def test_the_herd_at_the_start_all_get_places_at_once_with_no_503(transactional_db, stripe_settings, settings, redis):
    # Given a live drop and 120 signed-in shoppers who all arrive at once, Stripe at its default 25 calls/s
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    settings.POW_COST = 50
    settings.RATELIMIT_ENABLE = False  # they all come from this one address
    settings.STRIPE_RATE_LIMIT, settings.STRIPE_RATE_BURST = 25, 3
    from inventory import services as inventory_services
    from tests.factories import DropFactory

    drop = DropFactory(slug="herd", quantity=10, max_accounts_per_card=1000)
    inventory_services.drop_arm(drop=drop)
    queue_services.queue_start(drop=drop)
    sessions = [(session_for(veteran()), csrf_pair()) for _ in range(120)]
    before = len(stripe_client().v1.payment_intents.list(params={"limit": 1_000_000}).data)

    def arrive(base, session_key, csrf):
        http = requests.Session()
        http.cookies.set("sessionid", session_key)
        http.cookies.set("csrftoken", csrf)
        headers = {"X-CSRFToken": csrf, "User-Agent": BROWSER_USER_AGENT}
        card = http.post(f"{base}/api/drops/herd/authorization", json={"payment_method": "pm_card_visa"},
                         headers=headers, timeout=30)  # fmt: skip
        challenge = http.get(f"{base}/api/drops/herd/challenge", headers=headers, timeout=30).json()
        body = {"altcha": solved(challenge), "fingerprint": f"device-{session_key}", "signals": {"languages": 2}}
        joined = http.post(f"{base}/api/drops/herd/queue", json=body, headers=headers, timeout=30)
        return card.status_code, joined.status_code, time.monotonic()

    # When they all give their card and join
    with serving_asgi() as base, ThreadPoolExecutor(max_workers=24) as pool:
        started = time.monotonic()
        answers = list(pool.map(lambda pair: arrive(base, *pair), sessions))

    # Then every one has a place within seconds, none was told 503, and Stripe was not called at all
    assert {(card, joined) for card, joined, _ in answers} == {(202, 201)}
    assert max(at for _, _, at in answers) - started < 30
    assert redis.hlen(queue_keys(drop.pk).entries) == 120
    assert len(stripe_client().v1.payment_intents.list(params={"limit": 1_000_000}).data) == before
    assert set(Authorization.objects.filter(drop=drop).values_list("status", flat=True)) == {"scheduled"}


def test_a_shopper_whose_card_is_gone_does_not_hold_the_line(make_drop, login, redis):
    # Given two shoppers in line; the first one's card was let go before its hold was placed
    drop = make_drop(max_accounts_per_card=10)
    first, second = in_line(drop, login, 2)
    Authorization.objects.filter(shopper=first.shopper).update(status="canceled", cancellation_reason="released")

    # When the scheduler runs and admission ticks
    place(drop)
    queue_services.queue_admit_batch(drop=drop, now_ms=NOW, publish=False)
    tick = queue_services.queue_admit_batch(drop=drop, now_ms=NOW + 1000, publish=False)

    # Then the first passes (nothing to wait for) and the second is admitted
    assert redis.hget(queue_keys(drop.pk).holds, first.shopper.pk) is None
    assert (tick.expired, tick.admitted) == ([first.shopper.pk], [second.shopper.pk])


def test_admitted_shoppers_who_all_press_buy_together_are_captured_with_no_503(make_drop, login, settings):
    # Given ten shoppers admitted in one tick and a Stripe budget of 10 calls a second (bursts of 3)
    drop = make_drop(quantity=10, admission_rate=1000, max_accounts_per_card=100)
    buyers = in_line(drop, login, 10)
    place(drop)
    queue_services.queue_admit_batch(drop=drop, now_ms=NOW, publish=False)
    assert len(queue_services.queue_admit_batch(drop=drop, now_ms=NOW + 1000, publish=False).admitted) == 10
    settings.STRIPE_RATE_LIMIT, settings.STRIPE_RATE_BURST = 10, 3

    # When they all buy at once
    bought = [post_json(buyer, f"/api/drops/{drop.slug}/purchase") for buyer in buyers]

    # Then each capture waited its turn at the bucket: ten orders, no 503
    assert [response.status_code for response in bought] == [201] * 10
