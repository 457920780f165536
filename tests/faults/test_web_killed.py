"""A web process killed between claim and capture: the hold expires and the unit returns."""

import multiprocessing
import os
import time
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from flashsale.checkout import services as checkout_services
from inventory import selectors, services
from inventory.models import Drop, Order, OrderStatus
from tests.factories import DropFactory, UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _claim_then_die(drop_id, shopper_id):
    drop = Drop.objects.select_related("product").get(pk=drop_id)
    claim = services.unit_claim(drop=drop, shopper_id=shopper_id)
    services.order_reserve(claim=claim, shopper=UserFactory._meta.model(pk=shopper_id))
    os._exit(9)  # killed before the capture: no cleanup runs


def test_a_crash_between_claim_and_capture_is_repaired_by_the_sweep_and_the_settling(settings):
    settings.INVENTORY_HOLD_SECONDS = 1
    drop = DropFactory(quantity=1)
    services.drop_arm(drop=drop)
    crashed, next_shopper = UserFactory(), UserFactory()
    connections.close_all()
    proc = multiprocessing.get_context("fork").Process(target=_claim_then_die, args=(drop.pk, crashed.pk))
    proc.start()
    proc.join(timeout=30)
    assert proc.exitcode == 9
    stock = selectors.stock_get(drop=drop)
    assert (stock.redis, stock.held, stock.pending) == (0, 1, 1)  # held for a buyer who is gone
    time.sleep(1.2)
    assert len(services.holds_sweep(drop_id=drop.pk)) == 1
    # The checkout settles the stopped purchase: nothing was captured, so the order fails
    later = timezone.now() + timedelta(minutes=5)
    assert checkout_services.purchases_settle(now=later).failed == 1
    order = Order.objects.get(shopper=crashed)
    assert (order.status, order.failure_code) == (OrderStatus.FAILED, "purchase_stopped")
    stock = selectors.stock_get(drop=drop)
    assert (stock.redis, stock.held, stock.database) == (1, 0, 1)
    claim = services.unit_claim(drop=drop, shopper_id=next_shopper.pk)
    assert services.order_mark_paid(order=services.order_reserve(claim=claim, shopper=next_shopper))
