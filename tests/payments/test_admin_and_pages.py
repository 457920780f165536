"""The /orders/ page, and the admin: holds without secrets, refunds through Stripe, restock as its own step."""

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from inventory import selectors as inventory_selectors
from inventory.models import Order
from payments.models import Authorization, Refund
from tests.factories import UserFactory
from tests.payments.conftest import admit, authorize, hold, post_json, three_d_secure_method

# Not transactional: the Merchandisers group made by a data migration must survive (nothing here waits on a commit).
pytestmark = pytest.mark.django_db


@pytest.fixture
def merchandiser():
    """A staff member who schedules drops and handles payments (both groups)."""
    user = UserFactory(is_staff=True)
    user.groups.add(Group.objects.get(name="Merchandisers"), Group.objects.get(name="Payment operators"))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def paid_order(make_drop, login):
    drop = make_drop(quantity=2)
    client = login()
    authorize(client, drop)
    admit(drop, client.shopper.pk)
    assert post_json(client, f"/api/drops/{drop.slug}/purchase").status_code == 201
    return Order.objects.get(drop=drop)


def test_the_orders_page_lists_the_shoppers_orders(paid_order):
    client = Client()
    client.force_login(paid_order.shopper)

    page = client.get("/orders/")

    assert page.status_code == 200
    html = page.content.decode()
    assert f"#{paid_order.pk}" in html
    assert "$129.00" in html
    assert ">Paid<" in html
    assert "Your orders" in html


def test_the_orders_page_needs_a_signed_in_shopper():
    response = Client().get("/orders/")

    assert (response.status_code, response["Location"]) == (302, "/accounts/login/?next=/orders/")


def test_merchandisers_see_holds_but_never_a_client_secret(merchandiser, make_drop, login, stripe_sdk):
    drop = make_drop()
    hold(login(), drop)
    waiting = login()
    hold(waiting, drop, three_d_secure_method(stripe_sdk))
    secret = waiting.get(f"/api/drops/{drop.slug}/authorization").json()["client_secret"]
    assert secret
    pending = Authorization.objects.get(status="requires_action")

    listing = merchandiser.get("/admin/payments/authorization/")
    detail = merchandiser.get(f"/admin/payments/authorization/{pending.pk}/change/")

    assert (listing.status_code, detail.status_code) == (200, 200)
    for page in (listing, detail):
        assert secret not in page.content.decode()
        assert "_secret_" not in page.content.decode()
    assert "requires_action" in listing.content.decode()


def test_a_refund_goes_through_stripe_and_restocking_is_a_separate_action(merchandiser, paid_order, stripe_sdk):
    drop = paid_order.drop

    response = merchandiser.post(
        "/admin/inventory/order/", {"action": "refund_orders", "_selected_action": [paid_order.pk]}
    )

    assert response.status_code == 302
    paid_order.refresh_from_db()
    assert paid_order.status == "refunded"
    refund = Refund.objects.get(order=paid_order)
    assert (str(refund.amount), refund.currency, refund.restocked) == ("129.00", "usd", False)
    assert stripe_sdk.v1.refunds.retrieve(refund.refund_id).amount == 12900
    assert inventory_selectors.stock_get(drop=drop).remaining == 1  # the unit is not back on sale by itself
    # Refunding again changes nothing.
    merchandiser.post("/admin/inventory/order/", {"action": "refund_orders", "_selected_action": [paid_order.pk]})
    assert Refund.objects.count() == 1

    merchandiser.post("/admin/payments/refund/", {"action": "restock", "_selected_action": [refund.pk]})
    merchandiser.post("/admin/payments/refund/", {"action": "restock", "_selected_action": [refund.pk]})

    refund.refresh_from_db()
    assert refund.restocked
    assert inventory_selectors.stock_get(drop=drop).remaining == 2


def test_a_merchandiser_without_the_payments_group_cannot_refund(paid_order):
    user = UserFactory(is_staff=True)
    user.groups.add(Group.objects.get(name="Merchandisers"))
    client = Client()
    client.force_login(user)

    client.post("/admin/inventory/order/", {"action": "refund_orders", "_selected_action": [paid_order.pk]})

    paid_order.refresh_from_db()
    assert paid_order.status == "paid"
    assert Refund.objects.count() == 0
    assert client.get("/admin/payments/authorization/").status_code == 403


def test_a_shopper_cannot_open_the_payments_admin(paid_order):
    client = Client()
    client.force_login(paid_order.shopper)

    assert client.get("/admin/payments/authorization/").status_code == 302


def test_pages_load_localstripes_fake_stripe_js(settings, localstripe):
    import requests

    from payments.selectors import stripe_js_config

    config = stripe_js_config()

    assert config == {"publishable_key": settings.STRIPE_PUBLISHABLE_KEY, "js_url": f"{localstripe}/js.stripe.com/v3/"}
    script = requests.get(config["js_url"], timeout=5)
    assert script.status_code == 200
    assert "confirmCardPayment" in script.text
    settings.STRIPE_LOCALSTRIPE = False
    assert stripe_js_config()["js_url"] == "https://js.stripe.com/v3/"
