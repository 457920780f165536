"""Redis restarted mid-sale with its data gone: sales pause safely, stock and queue are rebuilt from the
database, and nothing is oversold — with buyer processes running through the crash."""

import multiprocessing
import random
import time
from collections import Counter

import pytest
from django.contrib.auth import get_user_model
from django.db import connections
from django.db.models import Sum
from redis.exceptions import RedisError

from flashsale.checkout import services as checkout_services
from inventory import selectors as inventory_selectors
from inventory import services as inventory_services
from inventory.errors import InventoryError, InventoryUnavailable
from inventory.models import Drop, Order, OrderStatus
from tests.factories import DropFactory
from waitingroom import persistence, selectors, services
from waitingroom.selectors import EntryStatus

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

STOCK = 40
SHOPPERS = 200
BUYERS = 4


def _buy_until_done(drop_id, shopper_ids, seed, seconds, results):
    """A web process: buy for random shoppers, as requests would, through Redis's crash and back."""
    rng = random.Random(seed)
    drop = Drop.objects.select_related("product").get(pk=drop_id)
    User = get_user_model()
    outcome = Counter()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        shopper_id = rng.choice(shopper_ids)
        try:
            claim = inventory_services.unit_claim(drop=drop, shopper_id=shopper_id)
            order = inventory_services.order_reserve(claim=claim, shopper=User(pk=shopper_id))
            inventory_services.order_mark_paid(order=order)
            outcome["paid"] += 1
        except InventoryError as exc:
            outcome[exc.code] += 1
        except RedisError:
            outcome["redis_down"] += 1  # the API answers 503 service_unavailable
            time.sleep(0.01)
    connections.close_all()
    results.put(dict(outcome))


def test_redis_lost_mid_sale_pauses_rebuilds_and_never_oversells(private_redis, redis_prefix):
    drop = DropFactory(quantity=STOCK, per_customer_limit=1, admission_rate=50)
    inventory_services.drop_arm(drop=drop)
    services.queue_start(drop=drop)
    User = get_user_model()
    User.objects.bulk_create([User(username=f"r{i}", password="!") for i in range(SHOPPERS)])
    shopper_ids = list(User.objects.filter(username__startswith="r").values_list("pk", flat=True))
    for shopper_id in shopper_ids:
        services.ticket_issue(drop=drop, shopper_id=shopper_id, require_authorization=False)
    persistence.queue_persist(drop=drop)
    connections.close_all()

    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    buyers = [ctx.Process(target=_buy_until_done, args=(drop.pk, shopper_ids, seed, 4.0, results))
              for seed in range(BUYERS)]  # fmt: skip
    for proc in buyers:
        proc.start()
    deadline = time.monotonic() + 10
    while inventory_selectors.stock_get(drop=drop).redis_sold < STOCK // 3 and time.monotonic() < deadline:
        time.sleep(0.005)

    private_redis.restart_empty()  # the crash: every key and every loaded script gone
    drop = Drop.objects.get(pk=drop.pk)
    with pytest.raises(InventoryUnavailable):  # sales pause: claims fail closed, nothing is sold on a guess
        inventory_services.unit_claim(drop=drop, shopper_id=shopper_ids[0])
    time.sleep(0.3)
    assert checkout_services.queue_save_all() == {drop.slug: -1}  # the beat task notices and rebuilds

    outcomes = Counter()
    for _ in buyers:
        outcomes.update(results.get(timeout=60))
    for proc in buyers:
        proc.join(timeout=30)
        assert proc.exitcode == 0

    drop.refresh_from_db()
    paid = Order.objects.filter(drop=drop, status=OrderStatus.PAID)
    assert paid.aggregate(units=Sum("quantity"))["units"] == drop.sold == STOCK  # sold out, not oversold
    assert outcomes["paid"] <= STOCK  # a few were paid in the database as Redis died under their commit
    assert outcomes["inventory_unavailable"] + outcomes["redis_down"] > 0  # buyers did hit the outage
    assert max(paid.values("shopper_id").annotate(n=Sum("quantity")).values_list("n", flat=True)) == 1
    inventory_services.inventory_rebuild(drop=drop)  # what a buyer in flight at the crash left behind
    stock = inventory_selectors.stock_get(drop=drop)
    assert (stock.redis, stock.redis_sold, stock.held) == (0, STOCK, 0)
    # the queue came back too: every saved shopper still has their ticket
    assert all(selectors.entry_get(drop=drop, shopper_id=s) is not None for s in shopper_ids)
    assert selectors.entry_get(drop=drop, shopper_id=shopper_ids[-1]).status in (
        EntryStatus.SOLD_OUT,
        EntryStatus.PURCHASED,
    )


@pytest.mark.parametrize("fast_path", [True, False])
def test_while_a_drops_redis_state_is_missing_every_answer_about_it_is_a_503_never_a_final_no(
    settings, redis, fast_path
):
    import requests

    from tests.conftest import BROWSER_USER_AGENT, serving_asgi
    from tests.factories import UserFactory
    from tests.security.conftest import csrf_pair, session_for
    from tests.waitingroom.support import authorize, solved

    # Given an admitted shopper and a waiting one, then Redis loses the drop's keys (restarted empty)
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    settings.WAITINGROOM_FAST_PATH = fast_path
    settings.POW_COST = 50
    drop = DropFactory(slug="air", quantity=5, admission_rate=1, checkout_window=600)
    inventory_services.drop_arm(drop=drop)
    services.queue_start(drop=drop)
    admitted, waiting, newcomer = UserFactory(), UserFactory(), UserFactory()
    for user in (admitted, waiting, newcomer):
        authorize(redis, drop, user)
    for user in (admitted, waiting):
        services.ticket_issue(drop=drop, shopper_id=user.pk)
    now = int(time.time() * 1000)
    services.queue_admit_batch(drop=drop, now_ms=now, publish=False)
    services.queue_admit_batch(drop=drop, now_ms=now + 1000, publish=False)
    persistence.queue_persist(drop=drop)
    from inventory.redis_keys import drop_tag
    from waitingroom.redis_keys import queue_keys

    lost = list(redis.scan_iter(match=f"{drop_tag(drop.pk)}:*"))
    assert lost
    redis.delete(*lost)

    def session(user):
        http = requests.Session()
        csrf = csrf_pair()
        http.cookies.set("sessionid", session_for(user))
        http.cookies.set("csrftoken", csrf)
        http.headers.update({"X-CSRFToken": csrf, "User-Agent": BROWSER_USER_AGENT})
        return http

    with serving_asgi() as base:
        api = f"{base}/api/drops/air"
        # When they read their place, buy, or a newcomer joins, while the state is missing
        answers = [
            session(admitted).get(f"{api}/queue", timeout=10),
            session(waiting).get(f"{api}/queue", timeout=10),
            session(admitted).post(f"{api}/purchase", json={}, timeout=10),
        ]
        newcomer_http = session(newcomer)
        challenge = newcomer_http.get(f"{api}/challenge", timeout=10).json()
        answers.append(newcomer_http.post(f"{api}/queue", json={
            "altcha": solved(challenge), "fingerprint": "device-newcomer-1", "signals": {"languages": 2},
        }, timeout=10))  # fmt: skip

        # Then every answer is "try again" (503 with Retry-After), never a final 403, 404 or 409
        for response in answers:
            assert response.status_code == 503, (response.request.url, response.text)
            assert response.json()["error"]["code"] in ("service_unavailable", "inventory_unavailable")
            assert int(response.headers["Retry-After"]) >= 1
        assert redis.hlen(queue_keys(drop.pk).entries) == 0  # nobody joined on a guess

        # When the drop is rebuilt (the beat's check, every second), the same reads answer as before
        assert checkout_services.queue_save_all() == {"air": -1}
        assert session(admitted).get(f"{api}/queue", timeout=10).json()["status"] == "admitted"
        assert session(waiting).get(f"{api}/queue", timeout=10).json()["status"] == "waiting"
