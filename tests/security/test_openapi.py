"""Schemathesis against a live server: docs/openapi.yaml is honoured, and no input makes a 5xx.

The server is the real ASGI application (the queue's lean path included) served by uvicorn in a
thread. Every generated request goes out as one of a few identities (nobody, a fresh shopper, a
shopper with a card hold who has been admitted) and, most of the time, names a drop that exists,
so that the generated bodies reach the parsing and the services behind it, not only the 404.
"""

import itertools
import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
import requests
import schemathesis
from django.conf import settings as django_settings
from django.test import Client
from django.utils import timezone

from inventory import services as inventory_services
from tests.factories import DropFactory
from tests.payments.conftest import admit
from waitingroom import services as waitingroom_services

from .conftest import csrf_pair, session_for, veteran

pytestmark = [pytest.mark.slow]

OPENAPI = Path(django_settings.BASE_DIR) / "docs" / "openapi.yaml"

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 20261201,
        "suppress-health-check": ["all"],
        "generation": {
            "mode": "all",
            "max-examples": 25,
            "deterministic": True,
            "database": "none",
            # The session and CSRF token come from the identities below, not from the security schemes.
            "with-security-parameters": False,
        },
        "checks": {
            "ignored_auth": {"enabled": False},
            # A schema-valid body is often refused on its meaning (a proof-of-work that was not solved, a card
            # Stripe does not know, a wrong password): 400 is right there, so "valid must be accepted" is off.
            "positive_data_acceptance": {"enabled": False},
        },
        "operations": [
            # /metrics answers every method (a finding, reported); the rest of its checks still apply.
            {"include-path": "/metrics", "checks": {"unsupported_method": {"enabled": False}}},
        ],
    }
)
SCHEMA = schemathesis.openapi.from_path(OPENAPI, config=CONFIG)
# The webhook is Stripe's: it is fuzzed too, but as nobody.
SLUGS = ("live", "live", "soon", None)  # None keeps the generated slug (almost always an unknown drop)
IDENTITIES = ("holder", "fresh", "anonymous")
ROUTE_SLUG = re.compile(r"[-a-zA-Z0-9_]+")  # Django's slug converter


@pytest.fixture
def world(transactional_db, live_server_url, settings, stripe_settings, cheap_pow, eager_tasks):
    """A live drop with a shopper who holds a card and is admitted, and a drop whose pre-queue is not open."""
    live = DropFactory(slug="live", quantity=5, per_customer_limit=2)
    inventory_services.drop_arm(drop=live)
    soon = DropFactory(
        slug="soon",
        prequeue_opens_at=timezone.now() + timedelta(hours=1),
        starts_at=timezone.now() + timedelta(hours=2),
    )
    inventory_services.drop_arm(drop=soon)
    holder = veteran()
    client = Client()
    client.force_login(holder)
    response = client.post(
        "/api/drops/live/authorization", json.dumps({"payment_method": "pm_card_visa"}), content_type="application/json"
    )
    assert response.status_code == 202, response.content
    admit(live, holder.pk)
    waitingroom_services.queue_start(drop=soon)
    return {"url": live_server_url, "holder": holder, "counter": itertools.count()}


def _session(world, identity: str) -> tuple[requests.Session, dict]:
    http = requests.Session()
    token = csrf_pair()
    http.cookies.set("csrftoken", token)
    if identity == "holder":
        http.cookies.set("sessionid", session_for(world["holder"]))
    elif identity == "fresh":
        http.cookies.set("sessionid", session_for(veteran()))
    return http, {"X-CSRFToken": token}


@SCHEMA.parametrize()
def test_the_api_keeps_to_its_description_and_never_answers_5xx(case, world):
    n = next(world["counter"])
    slug = SLUGS[n % len(SLUGS)]
    if slug is not None and "slug" in (case.path_parameters or {}):
        case.path_parameters["slug"] = slug
    identity = "anonymous" if case.path.startswith("/payments/") else IDENTITIES[n % len(IDENTITIES)]
    http, headers = _session(world, identity)
    with http:
        if not ROUTE_SLUG.fullmatch(str((case.path_parameters or {}).get("slug", "x"))):
            # No route matches, so Django's own (HTML) 404 answers; a finding, reported. Still never a 5xx.
            response = case.call(base_url=world["url"], session=http, headers=headers, timeout=15)
            assert response.status_code == 404, response.text[:500]
            return
        case.call_and_validate(base_url=world["url"], session=http, headers=headers, timeout=15)
