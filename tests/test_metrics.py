"""/metrics: Prometheus text with request latency, joins and the drop gauges; internal addresses only."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client

from inventory import services
from tests.factories import UserFactory

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
