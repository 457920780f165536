"""localstripe down or slow: purchases fail clearly, units return, and calls are retried later with the
same idempotency keys. The proxy in front of localstripe injects the fault and records every key."""

import pytest
import stripe
from django.test import Client

from inventory import selectors as inventory_selectors
from inventory.models import Order, OrderStatus
from payments.models import Authorization, AuthorizationStatus
from payments.services import cancellations
from payments.stripe_client import idempotency_key, stripe_client
from tests.factories import UserFactory
from tests.payments.conftest import admit, authorize, hold, post_json

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(autouse=True)
def eager_tasks():
    """Run Celery tasks in the test's process when they are sent (after commit, as in production)."""
    from flashsale.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def shopper():
    client = Client()
    client.force_login(UserFactory())
    return client


def buy(client, drop):
    return post_json(client, f"/api/drops/{drop.slug}/purchase", {})


def free_units(drop):
    stock = inventory_selectors.stock_get(drop=drop)
    return stock.redis, stock.held, stock.database


def test_stripe_down_a_purchase_fails_clearly_and_the_unit_returns(stripe_proxy, make_drop):
    drop = make_drop(quantity=1)
    first, second = shopper(), shopper()
    for client in (first, second):
        assert authorize(client, drop).status_code == 202
    admit(drop, first.session["_auth_user_id"], second.session["_auth_user_id"])

    stripe_proxy.down()
    response = buy(first, drop)
    assert (response.status_code, response.json()["error"]["code"]) == (402, "payment_failed")
    assert free_units(drop) == (1, 0, 1)  # back on sale at once
    assert Order.objects.get(drop=drop).status == OrderStatus.FAILED

    stripe_proxy.up()
    assert buy(second, drop).status_code == 201  # the next shopper gets the unit
    assert free_units(drop) == (0, 0, 0)


def test_a_capture_that_times_out_fails_clearly_and_the_hold_is_reconciled(stripe_proxy, make_drop, settings):
    settings.STRIPE_TIMEOUT = 0.5
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    drop = make_drop(quantity=1)
    client = shopper()
    assert authorize(client, drop).status_code == 202
    admit(drop, client.session["_auth_user_id"])
    authorization = Authorization.objects.get(drop=drop)

    stripe_proxy.mode, stripe_proxy.delay, stripe_proxy.slow_paths = "slow", 1.5, ("/capture",)
    response = buy(client, drop)
    assert (response.status_code, response.json()["error"]["code"]) == (402, "payment_failed")
    assert free_units(drop) == (1, 0, 1)  # the unit is back on sale at once
    order = Order.objects.get(drop=drop)
    assert (order.status, order.failure_code) == (OrderStatus.FAILED, "payment_failed")
    # The reconcile task read the hold while the capture was still on its way, and canceled it:
    # the late capture then finds nothing to take, so the shopper is never charged for a failed order.
    intent = stripe_client().v1.payment_intents.retrieve(authorization.payment_intent_id)
    assert intent.status == "canceled"
    assert stripe_proxy.keys_for("/capture") == [idempotency_key("capture", order)]
    assert stripe_proxy.keys_for("/cancel") == [idempotency_key("cancel", authorization)]
    assert Authorization.objects.get(pk=authorization.pk).status == AuthorizationStatus.CANCELED


def test_a_cancel_that_timed_out_is_retried_with_the_same_key(stripe_proxy, make_drop, settings):
    settings.STRIPE_TIMEOUT = 0.5
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    drop = make_drop(quantity=1)
    client = shopper()
    authorization = hold(client, drop)

    stripe_proxy.mode, stripe_proxy.delay = "slow", 1.0
    with pytest.raises(stripe.APIConnectionError):  # the task's autoretry is for exactly this error
        cancellations.authorization_cancel(authorization_id=authorization.pk)
    assert Authorization.objects.get(pk=authorization.pk).status == AuthorizationStatus.AUTHORIZED

    stripe_proxy.mode = "up"
    cancellations.authorization_cancel(authorization_id=authorization.pk)
    assert Authorization.objects.get(pk=authorization.pk).status == AuthorizationStatus.CANCELED
    key = idempotency_key("cancel", authorization)
    assert stripe_proxy.keys_for("/cancel") == [key, key]


def captured_equals_paid_plus_refunded(drop) -> tuple[int, int, int]:
    """(PaymentIntents Stripe captured, orders paid, refunds recorded) for the drop: the first must be the sum."""
    from payments.models import Refund

    ours = Authorization.objects.filter(drop=drop, payment_intent_id__isnull=False)
    captured = sum(
        1 for a in ours if stripe_client().v1.payment_intents.retrieve(a.payment_intent_id).status == "succeeded"
    )
    paid = Order.objects.filter(drop=drop, status=OrderStatus.PAID).count()
    return captured, paid, Refund.objects.filter(order__drop=drop).count()


def _purchase_then_killed(drop_id, shopper_id):
    """A web process buying: it is killed while Stripe is still answering the capture."""
    from django.contrib.auth import get_user_model

    from flashsale.checkout import services as checkout_services
    from inventory.models import Drop

    drop = Drop.objects.select_related("product").get(pk=drop_id)
    checkout_services.purchase_make(drop=drop, shopper=get_user_model().objects.get(pk=shopper_id))


def test_a_web_process_killed_after_stripe_captured_ends_with_a_paid_order(stripe_proxy, make_drop, settings):
    import multiprocessing
    import os
    import signal
    import time
    from datetime import timedelta

    from django.db import connections
    from django.utils import timezone

    from flashsale.checkout import services as checkout_services

    # Given an admitted shopper, and Stripe answering captures 1.5 s late (a slow network)
    drop = make_drop(quantity=1)
    client = shopper()
    assert authorize(client, drop).status_code == 202
    shopper_id = int(client.session["_auth_user_id"])
    admit(drop, shopper_id)
    stripe_proxy.mode, stripe_proxy.delay, stripe_proxy.slow_paths = "slow", 1.5, ("/capture",)

    # When the process buying is killed while the capture is on its way (Stripe still captures)
    connections.close_all()
    buyer = multiprocessing.get_context("fork").Process(target=_purchase_then_killed, args=(drop.pk, shopper_id))
    buyer.start()
    deadline = time.monotonic() + 10
    while not stripe_proxy.keys_for("/capture") and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(buyer.pid, signal.SIGKILL)
    buyer.join(timeout=10)
    time.sleep(2)  # the proxy delivers the capture to Stripe after its delay
    order = Order.objects.get(drop=drop)
    assert order.status == OrderStatus.PENDING  # the process died between the capture and the order's end
    assert captured_equals_paid_plus_refunded(drop) == (1, 0, 0)  # money taken, nothing paid: must not stay so

    # Then the settling (beat, every 10 s) finds the capture at Stripe and the order is paid: the unit is the shopper's
    run = checkout_services.purchases_settle(now=timezone.now() + timedelta(minutes=5))
    assert (run.paid, run.failed, run.refunded) == (1, 0, 0)
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID
    assert Authorization.objects.get(drop=drop).status == AuthorizationStatus.CAPTURED
    assert captured_equals_paid_plus_refunded(drop) == (1, 1, 0)
    assert free_units(drop) == (0, 0, 0)  # Redis and the database agree: sold
    assert checkout_services.purchases_settle(now=timezone.now() + timedelta(minutes=5)).paid == 0  # once


def test_a_capture_that_timed_out_is_refunded_even_when_its_follow_up_task_was_lost(
    stripe_proxy, make_drop, settings, monkeypatch
):
    import time
    from datetime import timedelta

    from django.utils import timezone

    from flashsale.checkout import services as checkout_services
    from payments import tasks

    # Given a capture that times out here but goes through at Stripe later, and its reconcile task lost
    # (the broker is the same Redis that died, say)
    settings.STRIPE_TIMEOUT = 0.5
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    monkeypatch.setattr(tasks.authorization_reconcile, "delay", lambda *args: None)
    drop = make_drop(quantity=1)
    client = shopper()
    assert authorize(client, drop).status_code == 202
    admit(drop, client.session["_auth_user_id"])
    stripe_proxy.mode, stripe_proxy.delay, stripe_proxy.slow_paths = "slow", 1.5, ("/capture",)
    assert buy(client, drop).status_code == 402
    time.sleep(1.5)
    assert captured_equals_paid_plus_refunded(drop) == (1, 0, 0)

    # When the settling runs
    stripe_proxy.mode = "up"
    run = checkout_services.purchases_settle(now=timezone.now() + timedelta(minutes=5))

    # Then the money is given back, and recorded: captured = paid + refunded
    assert run.reconciled == 1
    assert captured_equals_paid_plus_refunded(drop) == (1, 0, 1)
    assert checkout_services.purchases_settle(now=timezone.now() + timedelta(minutes=5)).reconciled == 0  # once
