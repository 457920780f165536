"""Redis by role: the sale's keys apart from the cache and sessions, and a closed drop's keys released."""

from datetime import timedelta

import pytest
from django.core.cache import caches
from django.utils import timezone
from redis import Redis

from flashsale.checkout.services import drop_recover_if_lost, drops_open, drops_redis_release_due
from flashsale.checkout.tasks import drops_redis_release_due as release_task
from inventory import services as inventory_services
from inventory.models import Drop, Order, OrderStatus
from inventory.redis_keys import drop_tag, inventory_keys
from tests.factories import DropFactory, UserFactory
from waitingroom import selectors, services
from waitingroom.fastpath import QueueFastPath
from waitingroom.models import QueueEntry
from waitingroom.redis_keys import queue_keys

from .waitingroom.support import Django, body_of, call, join_body, post, signed_in

pytestmark = pytest.mark.django_db

SESSION_KEY_PREFIX = "django.contrib.sessions.cached_db"


@pytest.fixture
def cache_apart(settings):
    """The cache and sessions on another Redis database than the sale's keys (CACHE_URL)."""
    url = settings.CACHE_URL.rsplit("/", 1)[0] + "/14"
    settings.CACHE_URL = url
    settings.CACHES = {**settings.CACHES, "default": {**settings.CACHES["default"], "LOCATION": url}}
    client = Redis.from_url(url)
    yield client
    client.close()


@pytest.fixture
def live(redis, settings):
    settings.POW_COST = 500
    drop = DropFactory(slug="air", quantity=20)
    inventory_services.drop_arm(drop=drop)
    services.queue_start(drop=drop)
    selectors.drop_cached_get(slug="air")
    return drop


def keys_of(client, prefix) -> list[str]:
    return [key.decode() for key in client.scan_iter(match=f"{prefix}:*", count=1000)]


def test_sessions_and_the_cache_live_on_cache_url_and_both_join_paths_honour_it(
    cache_apart, live, redis, redis_prefix, client
):
    # Given the cache on its own Redis database and two signed-in shoppers
    lean_shopper = signed_in(client, redis, live)
    session_key = caches["default"].make_key(SESSION_KEY_PREFIX + lean_shopper["session"])
    assert cache_apart.exists(session_key)
    assert not redis.exists(session_key)

    # When one joins through the lean path and the other through Django's view
    django = Django()
    status, entry, _ = call(QueueFastPath(django), "POST", "/api/drops/air/queue",
                            body=body_of(join_body(lean_shopper["client"])), shopper=lean_shopper)  # fmt: skip
    from django.test import Client

    other = Client(HTTP_USER_AGENT=client.defaults["HTTP_USER_AGENT"])
    other_user = signed_in(other, redis, live)["user"]
    response = post(other, "/api/drops/air/queue", join_body(other))

    # Then both are queued, the lean path read the session from the cache's Redis (nothing fell through)
    assert (status, entry["ticket"]) == (201, 1)
    assert django.calls == []
    assert (response.status_code, response.json()["ticket"]) == (201, 2)
    assert redis.hget(queue_keys(live.pk).entries, lean_shopper["user"].pk) == b"1"
    assert redis.hget(queue_keys(live.pk).entries, other_user.pk) == b"2"
    # and each Redis holds only its own role's keys
    sale, cached = keys_of(redis, redis_prefix), keys_of(cache_apart, redis_prefix)
    assert sale
    assert all("{drop:" in key for key in sale)
    assert cached
    assert not any("{drop:" in key for key in cached)
    assert any(SESSION_KEY_PREFIX in key for key in cached)


# --- A closed drop's keys ------------------------------------------------------------------------


@pytest.fixture
def keep(settings):
    settings.DROP_REDIS_KEEP_SECONDS = 60
    return 60


def sold_drop(redis, *, ended_ago=None, quantity=2):
    """An armed drop with two queued shoppers, ``quantity`` paid orders and its end ``ended_ago`` back."""
    drop = DropFactory(quantity=quantity)
    inventory_services.drop_arm(drop=drop)
    services.queue_start(drop=drop)
    for _ in range(2):
        services.ticket_issue(drop=drop, shopper_id=UserFactory().pk, require_authorization=False)
    for n in range(quantity):
        Order.objects.create(drop=drop, shopper=UserFactory(), status=OrderStatus.PAID, quantity=1, amount=10,
                             currency="usd", claim_id=f"c-{drop.pk}-{n}")  # fmt: skip
    Drop.objects.filter(pk=drop.pk).update(sold=quantity)
    if ended_ago is not None:
        Drop.objects.filter(pk=drop.pk).update(ends_at=timezone.now() - ended_ago)
    drop.refresh_from_db()
    return drop


def test_a_closed_drops_keys_go_after_the_keep_time_once_its_queue_is_saved(redis, keep):
    ended_long_ago = sold_drop(redis, ended_ago=timedelta(seconds=keep + 30), quantity=1)
    ended_just_now = sold_drop(redis, ended_ago=timedelta(seconds=keep - 30), quantity=1)
    live = sold_drop(redis, quantity=3)
    Drop.objects.filter(pk=live.pk).update(sold=1)
    assert redis.llen(queue_keys(ended_long_ago.pk).journal) > 0  # entries not yet saved

    released = release_task()

    assert list(released) == [ended_long_ago.slug]
    assert released[ended_long_ago.slug] > 5
    assert keys_of(redis, drop_tag(ended_long_ago.pk)) == []
    assert QueueEntry.objects.filter(drop=ended_long_ago).count() == 2  # saved before the keys went
    assert Drop.objects.get(pk=ended_long_ago.pk).redis_released_at is not None
    for kept in (ended_just_now, live):
        assert redis.exists(inventory_keys(kept.pk).stock)
        assert Drop.objects.get(pk=kept.pk).redis_released_at is None


def test_a_sold_out_drop_is_released_after_its_last_order_and_never_rebuilt(redis, keep):
    drop = sold_drop(redis, quantity=2)
    Order.objects.filter(drop=drop).update(updated_at=timezone.now() - timedelta(seconds=keep + 1))
    assert drop in drops_open()

    assert list(drops_redis_release_due()) == [drop.slug]
    drop.refresh_from_db()

    # Its keys are gone on purpose: no rebuild, and a shopper asking is "not queued", not "try again"
    assert drop not in drops_open()
    assert not redis.exists(inventory_keys(drop.pk).stock)
    assert selectors.entry_get(drop=drop, shopper_id=UserFactory().pk) is None
    # A key written late (a retry in flight) is swept by the next run
    redis.set(f"{drop_tag(drop.pk)}:late", 1)
    assert drops_redis_release_due() == {drop.slug: 1}


def test_a_drop_with_a_pending_order_keeps_its_keys(redis, keep):
    drop = sold_drop(redis, ended_ago=timedelta(seconds=keep * 2), quantity=1)
    Order.objects.filter(drop=drop).update(status=OrderStatus.PENDING)
    assert drops_redis_release_due() == {}
    assert redis.exists(inventory_keys(drop.pk).stock)


def test_a_released_drop_that_reopens_is_rebuilt(redis, keep):
    # Given a released, ended drop whose merchandiser then adds a unit and moves the end into the future
    drop = sold_drop(redis, ended_ago=timedelta(seconds=keep * 2), quantity=1)
    assert drop.slug in drops_redis_release_due()
    Drop.objects.filter(pk=drop.pk).update(quantity=2, ends_at=timezone.now() + timedelta(hours=1))
    drop.refresh_from_db()

    # Then it is open again and its keys are rebuilt from the database
    assert drop in drops_open()
    assert drop_recover_if_lost(drop=drop)
    assert int(redis.get(inventory_keys(drop.pk).stock)) == 1
