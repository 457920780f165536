"""The queue's HTTP contract: join with proof-of-work, position, and every rejection changing nothing."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from inventory import services as inventory_services
from tests.factories import DropFactory, UserFactory
from waitingroom import pow, selectors
from waitingroom.redis_keys import queue_keys
from waitingroom.services import queue_start

from .support import authorize, join_body, post, solved

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def cheap_pow(settings):
    settings.POW_COST = 1000
    selectors.drop_cache_clear()


@pytest.fixture
def live(redis):
    drop = DropFactory(slug="air")
    inventory_services.drop_arm(drop=drop)
    queue_start(drop=drop)
    return drop


@pytest.fixture
def signed_in(client):
    user = UserFactory(date_joined=timezone.now() - timedelta(days=30))
    client.force_login(user)
    return user


def test_join_then_watch_the_position(client, signed_in, live, redis):
    authorize(redis, live, signed_in)
    response = post(client, "/api/drops/air/queue", join_body(client))
    assert response.status_code == 201
    assert response.json() == {
        "status": "waiting",
        "ticket": 1,
        "position": 1,
        "serving": 0,
        "length": 1,
        "eta_seconds": 1,
        "admission_expires_at": None,
        "decline_code": None,
    }
    again = post(client, "/api/drops/air/queue", join_body(client))
    assert (again.status_code, again.json()["ticket"]) == (200, 1)
    assert client.get("/api/drops/air/queue").json()["position"] == 1


def test_challenge_is_the_widget_json(client, signed_in, live):
    challenge = client.get("/api/drops/air/challenge").json()
    assert set(challenge) == {"algorithm", "challenge", "maxnumber", "salt", "signature"}
    assert challenge["maxnumber"] == 1000
    assert client.post("/api/drops/air/challenge").status_code == 200


def test_replayed_proof_of_work_is_refused(client, signed_in, live, redis):
    authorize(redis, live, signed_in)
    body = join_body(client)
    other = UserFactory()
    authorize(redis, live, other)
    assert post(client, "/api/drops/air/queue", body).status_code == 201
    # The same shopper leaves no trace to replay into; a second account replaying it is refused.
    second = Client()
    second.force_login(other)
    response = post(second, "/api/drops/air/queue", body)
    assert response.status_code == 400  # bound to the first shopper
    assert redis.hlen(queue_keys(live.pk).entries) == 1


def test_pow_spent_once_even_for_a_fresh_entry(client, signed_in, live, redis):
    authorize(redis, live, signed_in)
    body = join_body(client)
    proof = pow.pow_verify(payload=body["altcha"], drop_id=live.pk, shopper_id=signed_in.pk)
    redis.set(f"{queue_keys(live.pk).pow_spent}{proof.signature}", 1)  # spent by an earlier request
    response = post(client, "/api/drops/air/queue", body)
    assert (response.status_code, response.json()["error"]["code"]) == (403, "pow_replayed")
    assert redis.hlen(queue_keys(live.pk).entries) == 0


def test_pow_for_another_drop_is_refused(client, signed_in, live, redis):
    other = DropFactory(slug="other")
    inventory_services.drop_arm(drop=other)
    authorize(redis, live, signed_in)
    response = post(client, "/api/drops/air/queue", join_body(client, slug="other"))
    assert (response.status_code, response.json()["error"]["code"]) == (400, "pow_invalid")
    assert redis.hlen(queue_keys(live.pk).entries) == 0


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ("{not json", 400, "invalid_request"),
        ("[1, 2]", 400, "invalid_request"),
        ({"fingerprint": "fp-1234567890"}, 400, "invalid_request"),
        ({"altcha": 5, "fingerprint": "fp-1234567890"}, 400, "invalid_request"),
        ({"altcha": "bm90IGpzb24=", "fingerprint": "fp-1234567890"}, 400, "pow_invalid"),
        ({"altcha": "@@@", "fingerprint": "fp-1234567890"}, 400, "pow_invalid"),
        ({"altcha": "eyJzYWx0IjogMX0=", "fingerprint": "short"}, 400, "invalid_request"),
    ],
)
def test_bad_join_input_is_a_clear_4xx_and_changes_nothing(client, signed_in, live, redis, body, status, code):
    authorize(redis, live, signed_in)
    response = post(client, "/api/drops/air/queue", body)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    assert redis.hlen(queue_keys(live.pk).entries) == 0


def test_forged_pow_signature_is_refused(client, signed_in, live, redis):
    authorize(redis, live, signed_in)
    challenge = client.get("/api/drops/air/challenge").json()
    forged = pow.challenge_create(drop_id=live.pk, shopper_id=signed_in.pk)
    challenge["signature"] = forged["signature"]
    body = {"altcha": solved(challenge), "fingerprint": "fp-1234567890"}
    response = post(client, "/api/drops/air/queue", body)
    assert (response.status_code, response.json()["error"]["code"]) == (400, "pow_invalid")


def test_join_without_an_authorization_is_402(client, signed_in, live, redis):
    response = post(client, "/api/drops/air/queue", join_body(client))
    assert (response.status_code, response.json()["error"]["code"]) == (402, "authorization_required")
    assert redis.hlen(queue_keys(live.pk).entries) == 0


def test_queue_needs_a_shopper(client, live):
    assert client.get("/api/drops/air/queue").status_code == 401
    assert client.get("/api/drops/air/queue").json()["error"]["code"] == "not_authenticated"
    assert client.get("/api/drops/air/challenge").status_code == 401


def test_not_in_queue_and_unknown_drop(client, signed_in, live):
    assert client.get("/api/drops/air/queue").json()["error"]["code"] == "not_in_queue"
    assert client.get("/api/drops/nope/queue").status_code == 404
    assert client.get("/api/drops/nope").json()["error"]["code"] == "not_found"


def test_csrf_is_enforced_on_join(live, redis):
    user = UserFactory()
    authorize(redis, live, user)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post("/api/drops/air/queue", "{}", content_type="application/json")
    assert (response.status_code, response.json()["error"]["code"]) == (403, "csrf_failed")


def test_drops_list_and_detail(client, live):
    DropFactory(slug="draft", is_draft=True)
    listed = client.get("/api/drops").json()["drops"]
    assert [d["slug"] for d in listed] == ["air"]
    detail = client.get("/api/drops/air").json()
    assert {k: detail[k] for k in ("state", "remaining", "quantity", "price", "currency", "queue")} == {
        "state": "live",
        "remaining": 10,
        "quantity": 10,
        "price": "129.00",
        "currency": "usd",
        "queue": {"length": 0, "serving": 0},
    }


def test_session_sign_in_and_out(client):
    UserFactory(username="ann")
    first = client.get("/api/session")
    assert first.json() == {"authenticated": False, "username": None}
    assert "csrftoken" in first.cookies
    bad = post(client, "/api/session", {"username": "ann", "password": "nope"})
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_credentials")
    good = post(client, "/api/session", {"username": "ann", "password": "correct horse battery"})
    assert good.json() == {"authenticated": True, "username": "ann"}
    assert client.delete("/api/session").status_code == 204
    assert client.get("/api/session").json()["authenticated"] is False


def test_sign_up(client):
    created = post(
        client, "/api/shoppers", {"username": "bo", "email": "bo@example.com", "password": "long enough pw 9"}
    )
    assert (created.status_code, created.json()) == (201, {"username": "bo"})
    assert client.get("/api/session").json()["username"] == "bo"
    taken = post(
        Client(), "/api/shoppers", {"username": "bo", "email": "x@example.com", "password": "long enough pw 9"}
    )
    assert (taken.status_code, taken.json()["error"]["code"]) == (409, "username_taken")
    weak = post(Client(), "/api/shoppers", {"username": "cy", "email": "c@example.com", "password": "123"})
    assert (weak.status_code, weak.json()["error"]["code"]) == (400, "invalid_request")
    assert "too short" in weak.json()["error"]["message"]


@pytest.mark.parametrize("email", ["<script>alert(1)</script>", "not an address", "a@", ""])
def test_sign_up_refuses_what_is_not_an_email_address_and_creates_nobody(client, email):
    response = post(client, "/api/shoppers", {"username": "bo", "email": email, "password": "long enough pw 9"})

    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_request")
    assert "email" in response.json()["error"]["message"]
    assert not get_user_model().objects.filter(username="bo").exists()


def test_join_and_position_touch_no_database(client, signed_in, live, redis, django_assert_num_queries):
    authorize(redis, live, signed_in)
    body = join_body(client)  # warms the per-process drop cache
    with django_assert_num_queries(0):
        assert post(client, "/api/drops/air/queue", body).status_code == 201
        assert client.get("/api/drops/air/queue").status_code == 200


def test_a_sold_out_drop_says_sold_out_even_to_a_shopper_whose_hold_was_released(client, signed_in, live, redis):
    claim = inventory_services.unit_claim(drop=live, shopper_id=UserFactory().pk, quantity=1)
    inventory_services.unit_commit(claim=claim)
    for _ in range(live.quantity - 1):
        inventory_services.unit_commit(claim=inventory_services.unit_claim(drop=live, shopper_id=UserFactory().pk))
    response = post(client, "/api/drops/air/queue", join_body(client))  # no hold: it was canceled at the sell-out
    assert (response.status_code, response.json()["error"]["code"]) == (409, "sold_out")
