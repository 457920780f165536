"""The shopper's HTML pages: home, a drop, sign-up and sign-in."""

from datetime import timedelta

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
    assert "Sign in</a> to join the queue" in visitor
    assert 'id="join"' not in visitor
    client.force_login(UserFactory())
    page = client.get(f"/drops/{drop.slug}/").content.decode()
    assert '<button id="join" type="button" disabled>' in page  # enabled once the card is held
    assert 'id="status" role="status" aria-live="polite"' in page
    assert f'challenge="/api/drops/{drop.slug}/challenge"' in page
    assert client.get("/drops/nope/").status_code == 404


def test_sign_up_then_sign_in_pages(client):
    response = client.post("/accounts/signup/?next=/orders/", {
        "username": "newbie", "password1": "a-long-pass-phrase-9", "password2": "a-long-pass-phrase-9",
    })  # fmt: skip
    assert (response.status_code, response["Location"]) == (302, "/orders/")
    assert get_user_model().objects.filter(username="newbie").exists()
    client.logout()
    signed_in = client.post("/accounts/login/", {"username": "newbie", "password": "a-long-pass-phrase-9"})
    assert signed_in.status_code == 302
    refused = client.post("/accounts/signup/", {"username": "x", "password1": "1", "password2": "2"})
    assert refused.status_code == 200  # the form again, with its errors


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/path", "http://testserver.evil/"])
def test_sign_up_never_sends_the_shopper_to_another_site(client, target):
    # Given a sign-up link whose `next` points off the site
    response = client.post(f"/accounts/signup/?next={target}", {
        "username": "newbie", "password1": "a-long-pass-phrase-9", "password2": "a-long-pass-phrase-9",
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
