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
