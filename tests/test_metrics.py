"""/metrics: Prometheus text with request latency, joins and the drop gauges; internal addresses only."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from prometheus_client import REGISTRY

from flashsale.metrics import ROUTE_LEAN_QUEUE
from inventory import services
from tests.factories import DropFactory, UserFactory
from waitingroom import selectors as queue_selectors
from waitingroom import services as queue_services
from waitingroom.fastpath import QueueFastPath

pytestmark = pytest.mark.django_db


def test_metrics_expose_the_drop_series(client, make_drop):
    drop = make_drop(quantity=5, slug="air", admission_rate=250)
    buyer = UserFactory()
    claim = services.unit_claim(drop=drop, shopper_id=buyer.pk)
    services.order_mark_paid(order=services.order_reserve(claim=claim, shopper=buyer))
    client.get("/api/drops/air")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    body = response.content.decode()
    for line in (
        'flashsale_drop_quantity{drop="air"} 5.0',
        'flashsale_drop_stock_remaining{drop="air"} 4.0',
        'flashsale_drop_units_sold{drop="air"} 1.0',
        'flashsale_drop_admission_rate_setting{drop="air"} 250.0',
        'flashsale_drop_state{drop="air",state="live"} 1.0',
        'flashsale_drop_orders{drop="air",status="paid"} 1.0',
        'flashsale_drop_authorizations{drop="air",status="authorized"} 0.0',
    ):
        assert line in body
    assert (
        'flashsale_http_request_duration_seconds_count{method="GET",route="api/drops/<slug:slug>",status="200"}' in body
    )


def test_metrics_numbers_equal_drop_status(client, make_drop):
    drop = make_drop(quantity=3, slug="air")
    services.unit_claim(drop=drop, shopper_id=UserFactory().pk)
    out = StringIO()
    call_command("drop_status", "air", "--json", stdout=out)
    status = json.loads(out.getvalue())
    body = client.get("/metrics").content.decode()
    assert f'flashsale_drop_units_held{{drop="air"}} {float(status["stock"]["held"])}' in body
    assert f'flashsale_drop_stock_remaining{{drop="air"}} {float(status["stock"]["redis"])}' in body


def test_metrics_refuse_outside_addresses(make_drop):
    response = Client(REMOTE_ADDR="203.0.113.9").get("/metrics")
    assert (response.status_code, response.json()["error"]["code"]) == (403, "forbidden")


def _count(route: str, status: int, method: str = "GET") -> float:
    value = REGISTRY.get_sample_value(
        "flashsale_http_request_duration_seconds_count", {"method": method, "route": route, "status": str(status)}
    )
    return value or 0.0


def _scrape(client) -> str:
    return client.get("/metrics").content.decode()


def test_card_limit_refusals_have_their_own_series_not_the_bots(client, make_drop):
    drop = make_drop(slug="air")
    queue_services.bots_count_blocked(drop=drop, reasons=["card_limit", "card_limit", "device_limit"])
    queue_services.bots_count_blocked(drop=drop, reasons=["webdriver"])
    body = _scrape(client)
    assert 'flashsale_drop_cards_refused{drop="air",reason="card_limit"} 2.0' in body
    assert 'flashsale_drop_joins_refused{drop="air",reason="device_limit"} 1.0' in body
    assert 'flashsale_drop_joins_refused{drop="air",reason="webdriver"} 1.0' in body
    assert 'joins_refused{drop="air",reason="card_limit"}' not in body


@pytest.mark.parametrize(
    ("method", "path", "route", "status"),
    [
        ("GET", "/static/js/dashboard.js", "static", 200),
        ("GET", "/favicon-that-is-not-there.ico", "not_found", 404),
        ("GET", "/api/nothing-here", "not_found", 404),
        ("GET", "/admin", "redirect", 301),
        ("BREW", "/healthz", "healthz", 405),
    ],
)
def test_requests_no_route_matched_are_labelled_for_what_they_are(client, method, path, route, status):
    method_label = "other" if method == "BREW" else method
    before, unmatched = _count(route, status, method_label), _count("unmatched", status, method_label)
    response = client.generic(method, path)
    assert response.status_code == status
    assert _count(route, status, method_label) == before + 1
    assert _count("unmatched", status, method_label) == unmatched
    if route != path.lstrip("/"):
        assert f'route="{path.lstrip("/")}"' not in _scrape(client)  # never the raw path as a label


def test_a_request_refused_before_routing_is_labelled_so(client, settings):
    settings.ALLOWED_HOSTS = ["testserver"]
    before = _count("before_routing", 400)
    assert client.get("/healthz", HTTP_HOST="evil.example").status_code == 400
    assert _count("before_routing", 400) == before + 1


def test_the_lean_queue_path_is_timed_under_the_queue_route(client, redis, settings):
    from tests.waitingroom.support import Django, call, signed_in

    drop = DropFactory(slug="air", quantity=20)
    services.drop_arm(drop=drop)
    queue_services.queue_start(drop=drop)
    queue_selectors.drop_cached_get(slug="air")
    shopper = signed_in(client, redis, drop)
    before = _count(ROUTE_LEAN_QUEUE, 404)
    django = Django()
    status, _, _ = call(QueueFastPath(django), "GET", "/api/drops/air/queue", shopper=shopper)
    assert (status, django.calls) == (404, [])  # answered by the lean path, not Django
    assert ROUTE_LEAN_QUEUE == "api/drops/<slug:slug>/queue"  # the route Django gives the same requests
    assert _count(ROUTE_LEAN_QUEUE, 404) == before + 1
