"""POST/GET /api/drops/{slug}/authorization against a real localstripe, Redis and database."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from inventory import services as inventory_services
from payments.models import Authorization, StripeCustomer
from payments.redis_keys import authorized_key
from tests.payments.conftest import authorize, finish_three_d_secure, post_json, three_d_secure_method

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_visa_card_is_held_for_price_times_the_limit(make_drop, login, redis, stripe_sdk):
    drop = make_drop(per_customer_limit=2)
    client = login()

    response = authorize(client, drop)

    assert response.status_code == 201
    assert response.json() == {
        "status": "authorized",
        "amount": "258.00",
        "currency": "usd",
        "card": {"brand": "visa", "last4": "4242"},
    }
    authorization = Authorization.objects.get(drop=drop, shopper=client.shopper)
    assert (authorization.status, authorization.amount, authorization.attempt) == ("authorized", Decimal("258.00"), 1)
    assert authorization.card_fingerprint
    assert authorization.capture_before - timezone.now() > timedelta(days=6, hours=23)
    intent = stripe_sdk.v1.payment_intents.retrieve(authorization.payment_intent_id)
    customer_id = StripeCustomer.objects.get(shopper=client.shopper).customer_id
    assert (intent.status, intent.amount, intent.capture_method, intent.customer) == (
        "requires_capture",
        25800,
        "manual",
        customer_id,
    )
    assert set(redis.hkeys(authorized_key(drop.pk))) == {str(client.shopper.pk).encode()}


def test_repeating_the_authorization_returns_the_same_hold(make_drop, login, stripe_sdk):
    drop = make_drop()
    client = login()
    first = authorize(client, drop)

    again = authorize(client, drop, "pm_card_chargeCustomerFail")

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert Authorization.objects.filter(drop=drop).count() == 1
    assert StripeCustomer.objects.count() == 1


@pytest.mark.parametrize("payment_method", ["pm_card_visa_chargeDeclined", "pm_card_chargeCustomerFail"])
def test_a_declined_card_answers_402_and_leaves_the_shopper_out_of_the_queue(make_drop, login, redis, payment_method):
    drop = make_drop()
    client = login()

    response = authorize(client, drop, payment_method)

    assert response.status_code == 402
    assert response.json()["error"]["code"] == "card_declined"
    authorization = Authorization.objects.get(drop=drop, shopper=client.shopper)
    assert (authorization.status, authorization.failure_code) == ("failed", "card_declined")
    assert redis.hlen(authorized_key(drop.pk)) == 0
    assert client.get(f"/api/drops/{drop.slug}/authorization").json()["status"] == "failed"


def test_after_a_decline_another_card_may_be_tried(make_drop, login, redis):
    drop = make_drop()
    client = login()
    authorize(client, drop, "pm_card_chargeCustomerFail")

    response = authorize(client, drop, "pm_card_visa")

    assert response.status_code == 201
    assert list(Authorization.objects.filter(drop=drop).order_by("attempt").values_list("attempt", "status")) == [
        (1, "failed"),
        (2, "authorized"),
    ]
    assert redis.hexists(authorized_key(drop.pk), client.shopper.pk)


def test_three_d_secure_answers_202_with_the_client_secret_then_the_hold_counts(
    make_drop, login, redis, stripe_sdk, localstripe
):
    drop = make_drop()
    client = login()
    method = three_d_secure_method(stripe_sdk)

    response = authorize(client, drop, method)

    assert response.status_code == 202
    body = response.json()
    authorization = Authorization.objects.get(drop=drop)
    assert body["status"] == "requires_action"
    assert body["client_secret"].startswith(f"{authorization.payment_intent_id}_secret_")
    assert redis.hlen(authorized_key(drop.pk)) == 0
    # The browser repeats the request: the same pending hold and secret, 200.
    again = authorize(client, drop, method)
    assert (again.status_code, again.json()) == (200, body)

    finish_three_d_secure(localstripe, authorization.payment_intent_id, body["client_secret"])

    current = client.get(f"/api/drops/{drop.slug}/authorization")
    assert current.status_code == 200
    assert current.json() == {
        "status": "authorized",
        "amount": "129.00",
        "currency": "usd",
        "card": {"brand": "visa", "last4": "3155"},
    }
    assert redis.hexists(authorized_key(drop.pk), client.shopper.pk)


def test_failed_three_d_secure_fails_the_hold(make_drop, login, stripe_sdk, localstripe, redis):
    drop = make_drop()
    client = login()
    body = authorize(client, drop, three_d_secure_method(stripe_sdk)).json()
    authorization = Authorization.objects.get(drop=drop)

    finish_three_d_secure(localstripe, authorization.payment_intent_id, body["client_secret"], success=False)

    assert client.get(f"/api/drops/{drop.slug}/authorization").json()["status"] == "failed"
    authorization.refresh_from_db()
    assert (authorization.status, authorization.failure_code) == ("failed", "authentication_failed")
    assert redis.hlen(authorized_key(drop.pk)) == 0


@pytest.mark.parametrize(
    ("drop_kwargs", "code"),
    [
        ({"ends_at": timezone.now() - timedelta(seconds=1)}, "drop_closed"),
        (
            {
                "prequeue_opens_at": timezone.now() + timedelta(hours=1),
                "starts_at": timezone.now() + timedelta(hours=2),
            },
            "drop_not_open",
        ),
    ],
)
def test_a_closed_or_unopened_drop_refuses_with_409(make_drop, login, drop_kwargs, code):
    drop = make_drop(**drop_kwargs)
    client = login()

    response = authorize(client, drop)

    assert (response.status_code, response.json()["error"]["code"]) == (409, code)
    assert Authorization.objects.count() == 0
    assert StripeCustomer.objects.count() == 0


def test_a_sold_out_drop_refuses_with_409(make_drop, login, shopper):
    drop = make_drop(quantity=1)
    claim = inventory_services.unit_claim(drop=drop, shopper_id=shopper.pk)
    inventory_services.order_mark_paid(order=inventory_services.order_reserve(claim=claim, shopper=shopper))
    client = login()

    response = authorize(client, drop)

    assert (response.status_code, response.json()["error"]["code"]) == (409, "drop_closed")
    assert Authorization.objects.count() == 0


def test_the_prequeue_may_authorize(make_drop, login):
    drop = make_drop(
        prequeue_opens_at=timezone.now() - timedelta(minutes=1), starts_at=timezone.now() + timedelta(hours=1)
    )

    assert authorize(login(), drop).status_code == 201


@pytest.mark.parametrize(
    ("body", "message_part"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "JSON object"),
        ({}, "'payment_method' is required"),
        ({"payment_method": 42}, "type str"),
        ({"payment_method": "tok_visa"}, "pm_"),
        ({"payment_method": "pm_card_visa'; DROP"}, "pm_"),
    ],
)
def test_bad_input_is_400_and_changes_nothing(make_drop, login, body, message_part):
    drop = make_drop()
    client = login()

    response = post_json(client, f"/api/drops/{drop.slug}/authorization", body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert message_part in error["message"]
    assert Authorization.objects.count() == 0
    assert StripeCustomer.objects.count() == 0


def test_an_unknown_payment_method_is_400_and_changes_nothing(make_drop, login):
    drop = make_drop()
    client = login()

    response = authorize(client, drop, "pm_does_not_exist")

    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_request")
    assert Authorization.objects.count() == 0


def test_signed_out_is_401_and_unknown_drop_is_404(make_drop, login):
    drop = make_drop()

    anonymous = authorize(Client(), drop)
    missing = authorize(login(), drop.__class__(slug="nope"))

    assert (anonymous.status_code, anonymous.json()["error"]["code"]) == (401, "not_authenticated")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    assert Authorization.objects.count() == 0


def test_get_without_an_authorization_is_404(make_drop, login):
    drop = make_drop()

    response = login().get(f"/api/drops/{drop.slug}/authorization")

    assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found")


def test_csrf_is_enforced_on_post(make_drop, login):
    drop = make_drop()
    client = login(enforce_csrf_checks=True)

    refused = authorize(client, drop)

    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "csrf_failed")
    assert Authorization.objects.count() == 0
    token = "a" * 32
    client.cookies["csrftoken"] = token
    accepted = post_json(
        client, f"/api/drops/{drop.slug}/authorization", {"payment_method": "pm_card_visa"}, HTTP_X_CSRFTOKEN=token
    )
    assert accepted.status_code == 201
