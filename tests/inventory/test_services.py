"""Inventory services against a real Redis and the real database."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from inventory import selectors, services
from inventory.errors import InventoryUnavailable, LimitReached, QuantityBelowTaken, SoldOut
from inventory.models import Drop, DropState, Order, OrderStatus
from inventory.redis_keys import inventory_keys
from inventory.scripts import ArmResult, CommitResult
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def buy(drop, shopper, quantity=1):
    claim = services.unit_claim(drop=drop, shopper_id=shopper.pk, quantity=quantity)
    order = services.order_reserve(claim=claim, shopper=shopper)
    assert services.order_mark_paid(order=order)
    return order


def test_a_sale_moves_redis_and_the_database_together(make_drop, shopper):
    drop = make_drop(quantity=3)
    order = buy(drop, shopper)
    drop.refresh_from_db()
    assert (order.status, order.amount, order.currency, drop.sold) == (OrderStatus.PAID, Decimal("129.00"), "usd", 1)
    stock = selectors.stock_get(drop=drop)
    assert (stock.redis, stock.redis_sold, stock.held, stock.database, stock.sold, stock.pending) == (2, 1, 0, 2, 1, 0)
    assert selectors.stock_agrees(stock)


def test_the_last_unit_sells_once(make_drop):
    drop = make_drop(quantity=1)
    first, second = UserFactory(), UserFactory()
    buy(drop, first)
    with pytest.raises(SoldOut):
        services.unit_claim(drop=drop, shopper_id=second.pk)
    assert selectors.drop_state_get(drop=drop) is DropState.SOLD_OUT


def test_per_customer_limit_in_redis(make_drop, shopper):
    drop = make_drop(quantity=5, per_customer_limit=2)
    buy(drop, shopper, quantity=2)
    with pytest.raises(LimitReached):
        services.unit_claim(drop=drop, shopper_id=shopper.pk)
    with pytest.raises(LimitReached):
        services.unit_claim(drop=drop, shopper_id=UserFactory().pk, quantity=3)


def test_database_refuses_to_oversell_when_redis_lost_its_data(make_drop, redis):
    """Redis re-armed with full stock after losing it: the database guard still holds."""
    drop = make_drop(quantity=1)
    buy(drop, UserFactory())
    keys = inventory_keys(drop.pk)
    redis.delete(*keys.as_list())
    redis.set(keys.stock, 1)  # Redis came back with a stale, full stock
    late = UserFactory()
    claim = services.unit_claim(drop=drop, shopper_id=late.pk)
    with pytest.raises(SoldOut):
        services.order_reserve(claim=claim, shopper=late)
    drop.refresh_from_db()
    assert drop.sold == 1
    assert Order.objects.filter(drop=drop, status=OrderStatus.PAID).count() == 1
    assert redis.hlen(inventory_keys(drop.pk).holds) == 0  # the refused claim was released


def test_database_limit_holds_when_redis_forgot_the_shopper(make_drop, shopper, redis):
    drop = make_drop(quantity=5)
    buy(drop, shopper)
    redis.hdel(inventory_keys(drop.pk).customers, shopper.pk)
    claim = services.unit_claim(drop=drop, shopper_id=shopper.pk)
    with pytest.raises(LimitReached):
        services.order_reserve(claim=claim, shopper=shopper)
    drop.refresh_from_db()
    assert drop.sold == 1
    assert selectors.stock_get(drop=drop).redis == 4


def test_a_failed_payment_puts_the_unit_back_at_once(make_drop, shopper):
    drop = make_drop(quantity=1)
    claim = services.unit_claim(drop=drop, shopper_id=shopper.pk)
    order = services.order_reserve(claim=claim, shopper=shopper)
    assert services.order_mark_failed(order=order, failure_code="card_declined")
    assert not services.order_mark_failed(order=order, failure_code="card_declined")  # double click
    drop.refresh_from_db()
    stock = selectors.stock_get(drop=drop)
    assert (drop.sold, stock.redis, stock.held) == (0, 1, 0)
    assert Order.objects.get(pk=order.pk).status == OrderStatus.FAILED
    buy(drop, UserFactory())  # the next shopper gets it


def test_mark_paid_twice_commits_once(make_drop, shopper, redis):
    drop = make_drop(quantity=2)
    order = buy(drop, shopper)
    assert services.order_mark_paid(order=Order.objects.get(pk=order.pk))
    assert int(redis.get(inventory_keys(drop.pk).sold)) == 1
    assert services.unit_commit(claim=services.order_claim(order)) is CommitResult.ALREADY_COMMITTED


def test_the_sweep_returns_an_expired_hold_and_leaves_its_order_to_the_checkout(make_drop, shopper, settings):
    # Given a pending order whose hold expired (its purchase stopped midway; was the money taken?)
    settings.INVENTORY_HOLD_SECONDS = 0
    drop = make_drop(quantity=1)
    claim = services.unit_claim(drop=drop, shopper_id=shopper.pk)
    order = services.order_reserve(claim=claim, shopper=shopper)

    # When the sweep runs
    assert services.holds_sweep(drop_id=drop.pk) == [claim.id]

    # Then the Redis hold is back in stock, but the order and its database reservation stay for the checkout
    # to settle (paid if Stripe captured, failed if not): the database still refuses to sell the unit twice
    order.refresh_from_db()
    drop.refresh_from_db()
    assert (order.status, drop.sold) == (OrderStatus.PENDING, 1)
    assert selectors.stock_get(drop=drop).redis == 1


def test_claim_with_redis_data_gone_fails_closed_then_rebuild_restores(make_drop, shopper, redis):
    drop = make_drop(quantity=4, per_customer_limit=2)
    buy(drop, shopper)
    pending_claim = services.unit_claim(drop=drop, shopper_id=(other := UserFactory()).pk)
    pending = services.order_reserve(claim=pending_claim, shopper=other)
    redis.delete(*inventory_keys(drop.pk).as_list())
    with pytest.raises(InventoryUnavailable):
        services.unit_claim(drop=drop, shopper_id=UserFactory().pk)
    result = services.inventory_rebuild(drop=drop)
    assert (result.stock, result.sold, result.held) == (2, 1, 1)
    assert services.order_mark_paid(order=pending)
    stock = selectors.stock_get(drop=drop)
    assert (stock.redis, stock.redis_sold, stock.held) == (2, 2, 0)
    assert selectors.stock_agrees(stock)
    with pytest.raises(LimitReached):  # the per-customer counts were rebuilt too
        services.unit_claim(drop=drop, shopper_id=shopper.pk, quantity=2)


def test_arm_twice_keeps_the_live_counter(drop, shopper):
    buy(drop, shopper)
    assert services.drop_arm(drop=drop) is ArmResult.ALREADY_ARMED
    assert selectors.stock_get(drop=drop).redis == drop.quantity - 1


def test_quantity_change_moves_redis_by_the_difference(make_drop, shopper):
    drop = make_drop(quantity=10, per_customer_limit=2)
    buy(drop, shopper, quantity=2)
    drop = services.drop_quantity_set(drop=drop, quantity=20)
    assert (drop.quantity, selectors.stock_get(drop=drop).redis) == (20, 18)
    drop = services.drop_quantity_set(drop=drop, quantity=2)
    assert (drop.quantity, selectors.stock_get(drop=drop).redis) == (2, 0)
    with pytest.raises(QuantityBelowTaken):
        services.drop_quantity_set(drop=drop, quantity=1)
    drop.refresh_from_db()
    assert (drop.quantity, selectors.stock_get(drop=drop).redis) == (2, 0)


def test_quantity_cannot_go_below_held_units(make_drop):
    drop = make_drop(quantity=3, per_customer_limit=3)
    services.unit_claim(drop=drop, shopper_id=UserFactory().pk, quantity=3)  # held, not in the database
    with pytest.raises(QuantityBelowTaken):
        services.drop_quantity_set(drop=drop, quantity=2)
    drop.refresh_from_db()
    assert (drop.quantity, selectors.stock_get(drop=drop).redis) == (3, 0)


@pytest.mark.parametrize(
    ("offset", "paused", "ends_in", "sold", "expected"),
    [
        (timedelta(minutes=10), False, None, 0, DropState.SCHEDULED),
        (timedelta(minutes=2), False, None, 0, DropState.PREQUEUE),
        (timedelta(0), False, None, 0, DropState.LIVE),
        (timedelta(0), True, None, 0, DropState.PAUSED),
        (timedelta(0), False, None, 5, DropState.SOLD_OUT),
        (timedelta(0), False, timedelta(seconds=-1), 0, DropState.ENDED),
    ],
)
def test_state_follows_time_stock_and_pause(offset, paused, ends_in, sold, expected):
    now = timezone.now()
    drop = Drop(
        quantity=5,
        sold=sold,
        paused=paused,
        starts_at=now + offset,
        prequeue_opens_at=now + offset - timedelta(minutes=5),
        ends_at=None if ends_in is None else now + ends_in,
    )
    assert drop.state_at(now) is expected


def test_arming_wipes_keys_left_by_an_older_drop_with_the_same_id(make_drop, redis):
    """A recreated database reuses drop ids; the new drop must not inherit the old one's stock or queue."""
    drop = make_drop(quantity=100)
    keys = inventory_keys(drop.pk)
    redis.hset(keys.meta, "epoch", "12345.000000")  # as an older drop 1 left it
    redis.set(keys.stock, 3)
    redis.hset(f"{keys.stock.rsplit(':', 1)[0]}:q:entries", "7", 1)
    assert services.drop_arm(drop=drop) is ArmResult.ARMED
    assert selectors.stock_get(drop=drop).redis == 100
    assert not redis.exists(f"{keys.stock.rsplit(':', 1)[0]}:q:entries")
    assert services.drop_arm(drop=drop) is ArmResult.ALREADY_ARMED
