"""The shopper's HTML pages: home, a drop, sign-up and sign-in."""

import re
from datetime import UTC, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from inventory import services as inventory_services
from tests.factories import DropFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_home_lists_upcoming_and_live_drops_but_not_drafts_or_old_ones(client):
    for slug, kwargs in {
        "live-one": {},
        "soon": {"prequeue_opens_at": timezone.now() + timedelta(hours=1),
                 "starts_at": timezone.now() + timedelta(hours=2)},
        "draft": {"is_draft": True},
        "old": {"ends_at": timezone.now() - timedelta(days=2)},
    }.items():  # fmt: skip
        inventory_services.drop_arm(drop=DropFactory(slug=slug, **kwargs))
    body = client.get("/").content.decode()
    assert "/drops/live-one/" in body
    assert "/drops/soon/" in body
    assert "/drops/draft/" not in body
    assert "/drops/old/" not in body


def test_drop_page_for_a_visitor_and_for_a_shopper(client, drop):
    visitor = client.get(f"/drops/{drop.slug}/").content.decode()
    assert "create an account</a> to join the queue" in visitor
    assert f'href="/accounts/signup/?next=/drops/{drop.slug}/"' in visitor
    assert 'id="join"' not in visitor
    client.force_login(UserFactory())
    page = client.get(f"/drops/{drop.slug}/").content.decode()
    assert '<button id="join" type="button" disabled>' in page  # enabled once the card is held
    assert 'id="status" role="status" aria-live="polite"' in page
    assert f'challenge="/api/drops/{drop.slug}/challenge"' in page
    assert client.get("/drops/nope/").status_code == 404


def test_sign_up_then_sign_in_pages(client):
    response = client.post("/accounts/signup/?next=/orders/", {
        "username": "newbie", "email": "newbie@example.com", "password1": "a-long-pass-phrase-9",
        "password2": "a-long-pass-phrase-9",
    })  # fmt: skip
    assert (response.status_code, response["Location"]) == (302, "/orders/")
    assert get_user_model().objects.get(username="newbie").email == "newbie@example.com"
    client.logout()
    signed_in = client.post("/accounts/login/", {"username": "newbie", "password": "a-long-pass-phrase-9"})
    assert signed_in.status_code == 302
    refused = client.post("/accounts/signup/", {"username": "x", "password1": "1", "password2": "2"})
    assert refused.status_code == 200  # the form again, with its errors


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/path", "http://testserver.evil/"])
def test_sign_up_never_sends_the_shopper_to_another_site(client, target):
    # Given a sign-up link whose `next` points off the site
    response = client.post(f"/accounts/signup/?next={target}", {
        "username": "newbie", "email": "newbie@example.com", "password1": "a-long-pass-phrase-9",
        "password2": "a-long-pass-phrase-9",
    })  # fmt: skip

    # Then the new shopper lands on the home page, not there
    assert (response.status_code, response["Location"]) == (302, "/")


def test_signing_in_without_a_next_page_lands_on_the_home_page(client):
    get_user_model().objects.create_user(username="ann", password="a-long-pass-phrase-9")

    response = client.post("/accounts/login/", {"username": "ann", "password": "a-long-pass-phrase-9"})

    assert (response.status_code, response["Location"]) == (302, "/")


def test_the_shops_pages_carry_a_strict_content_security_policy(client, settings):
    drop = DropFactory(slug="air")
    inventory_services.drop_arm(drop=drop)

    for path in ("/", "/drops/air/", "/accounts/login/"):
        response = client.get(path)
        policy = response["Content-Security-Policy"]
        assert "default-src 'self'" in policy
        assert "object-src 'none'" in policy
        assert "frame-ancestors 'none'" in policy
        assert "'unsafe-eval'" not in policy
        assert "script-src 'self' http://127.0.0.1" in policy  # localstripe serves Stripe.js locally
        assert response["Permissions-Policy"].startswith("camera=()")
    assert "Content-Security-Policy" not in client.get("/api/drops")  # JSON is not a page


@pytest.mark.parametrize("method", ["put", "delete", "patch"])
def test_pages_answer_405_to_methods_they_do_not_take(client, method):
    drop = DropFactory(slug="air")
    inventory_services.drop_arm(drop=drop)

    for path in ("/", "/drops/air/"):
        assert getattr(client, method)(path).status_code == 405


# --- The shop's own words: product, prices, states, times ------------------------------------------


def test_a_drop_page_shows_the_product_its_price_in_the_shops_format_and_its_state_in_plain_words(client):
    drop = DropFactory(slug="air", product__title="Air Flash 1", product__price="1299.00", product__currency="usd",
                       product__description="Limited run.", product__image_url="https://img.example/air.png",
                       prequeue_opens_at=timezone.now() + timedelta(hours=1),
                       starts_at=timezone.now() + timedelta(hours=2))  # fmt: skip
    inventory_services.drop_arm(drop=drop)

    page = client.get("/drops/air/").content.decode()

    assert re.search(r'<img src="https://img.example/air.png"\s+alt="Air Flash 1"', page)
    assert "$1,299.00" in page
    assert "Limited run." in page
    assert ">Coming soon</span>" in page
    assert ">scheduled<" not in page  # the raw state name is not shown
    # Times are <time> elements the page's script shows in the shopper's own zone, with a countdown
    starts = drop.starts_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f'<time datetime="{starts}" data-local data-countdown="starts">' in page
    shown = page.split('data-countdown="starts">', 1)[1].split("</time>")[0]
    assert shown == drop.starts_at.astimezone(UTC).strftime("%d %b %Y, %H:%M UTC")  # words until the script runs


def test_after_buying_the_drop_page_shows_only_the_order(client, drop):
    from inventory.models import Order, OrderStatus

    shopper = UserFactory()
    order = Order.objects.create(drop=drop, shopper=shopper, status=OrderStatus.PAID, quantity=1, amount=10,
                                 currency="usd", claim_id="c-1")  # fmt: skip
    client.force_login(shopper)

    page = client.get(f"/drops/{drop.slug}/").content.decode()

    assert f'You bought this. <a href="/orders/{order.pk}/">See order #{order.pk}</a>' in page
    for step in ('id="card-section"', 'id="join"', "altcha-widget", 'id="hold"'):
        assert step not in page


def test_a_sold_out_drop_page_has_no_card_or_queue_step(client):
    drop = DropFactory(slug="gone", quantity=1)
    inventory_services.drop_arm(drop=drop)
    drop.sold = 1
    drop.save(update_fields=["sold"])
    inventory_services.inventory_rebuild(drop=drop)
    client.force_login(UserFactory())

    page = client.get("/drops/gone/").content.decode()

    assert "Sold out: every unit has found a buyer." in page
    assert 'id="card-section"' not in page


def test_every_page_has_a_skip_link_and_the_favicon(client):
    page = client.get("/").content.decode()
    assert '<a class="skip-link" href="#main">Skip to content</a>' in page
    assert 'rel="icon" href="/static/favicon.svg"' in page
    favicon = client.get("/favicon.ico")
    assert (favicon.status_code, favicon["Location"]) == (301, "/static/favicon.svg")
    assert client.get("/static/favicon.svg").status_code == 200


# --- Accounts ------------------------------------------------------------------------------------


def test_account_pages_exist_where_django_sends_people(client):
    user = UserFactory(email="ann@example.com")
    assert client.get("/accounts/profile/")["Location"] == "/accounts/login/?next=/accounts/profile/"
    client.force_login(user)
    assert client.get("/accounts/")["Location"] == "/accounts/profile/"
    profile = client.get("/accounts/profile/").content.decode()
    assert user.username in profile
    assert "ann@example.com" in profile
    assert 'href="/accounts/password_change/"' in profile


def test_sign_up_asks_for_a_valid_e_mail(client):
    response = client.post("/accounts/signup/", {
        "username": "newbie", "email": "<script>", "password1": "a-long-pass-phrase-9",
        "password2": "a-long-pass-phrase-9",
    })  # fmt: skip
    assert response.status_code == 200
    assert "Enter a valid email address." in response.content.decode()
    assert not get_user_model().objects.filter(username="newbie").exists()
    form = client.get("/accounts/signup/").content.decode()
    assert 'type="email" name="email"' in form


def test_password_reset_by_e_mail(client, mailoutbox):
    user = UserFactory(email="ann@example.com")
    user.set_password("the-old-pass-phrase-1")
    user.save()

    # Given a shopper who asks for a reset, the link comes by e-mail
    response = client.post("/accounts/password_reset/", {"email": "ann@example.com"})
    assert response["Location"] == "/accounts/password_reset/done/"
    assert len(mailoutbox) == 1
    link = re.search(r"http://testserver(/accounts/reset/\S+/)", mailoutbox[0].body).group(1)

    # When they follow it and choose a new password
    form = client.get(link, follow=True)
    assert "Choose a new password" in form.content.decode()
    done = client.post(form.redirect_chain[-1][0], {"new_password1": "a-new-pass-phrase-2",
                                                    "new_password2": "a-new-pass-phrase-2"})  # fmt: skip

    # Then the new one signs them in
    assert done["Location"] == "/accounts/reset/done/"
    assert client.login(username=user.username, password="a-new-pass-phrase-2")
    # and an unknown address says the same, sending nothing (no account is confirmed to exist)
    assert client.post("/accounts/password_reset/", {"email": "nobody@example.com"}).status_code == 302
    assert len(mailoutbox) == 1


def test_an_order_has_its_own_page_for_its_shopper_only(client, drop):
    from inventory.models import Order, OrderStatus

    shopper, other = UserFactory(), UserFactory()
    order = Order.objects.create(drop=drop, shopper=shopper, status=OrderStatus.PAID, quantity=1,
                                 amount="129.00", currency="usd", claim_id="c-1")  # fmt: skip
    client.force_login(shopper)
    page = client.get(f"/orders/{order.pk}/").content.decode()
    assert f"Order #{order.pk}" in page
    assert drop.product.title in page
    assert "$129.00" in page
    assert "<strong>Paid</strong>" in page
    listing = client.get("/orders/").content.decode()
    assert f'<a href="/orders/{order.pk}/">#{order.pk}</a>' in listing
    assert drop.product.title in listing
    client.force_login(other)
    assert client.get(f"/orders/{order.pk}/").status_code == 404
