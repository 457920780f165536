"""The live dashboard: for merchandisers only, the same figures as drop_status, live charts, controls."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from inventory import services as inventory_services
from inventory.models import Drop
from tests.factories import DropFactory, UserFactory
from waitingroom import dashboard, services

pytestmark = pytest.mark.django_db


@pytest.fixture
def busy_drop():
    drop = DropFactory(slug="air", quantity=10, admission_rate=5)
    inventory_services.drop_arm(drop=drop)
    services.queue_start(drop=drop)
    for shopper in range(1000, 1020):
        services.ticket_issue(drop=drop, shopper_id=shopper, require_authorization=False)
    buyer = UserFactory()
    claim = inventory_services.unit_claim(drop=drop, shopper_id=buyer.pk)
    inventory_services.order_mark_paid(order=inventory_services.order_reserve(claim=claim, shopper=buyer))
    services.bots_count_blocked(drop=drop, reasons=["device_limit"])
    now = 1_800_000_000_000
    for second in range(4):
        services.queue_admit_batch(drop=drop, now_ms=now + second * 1000)
    return drop


def test_dashboard_renders_for_a_merchandiser(client, merchandiser, busy_drop):
    response = client.get(reverse("admin:waitingroom_dropqueue_dashboard", args=[busy_drop.pk]))
    body = response.content.decode()
    assert response.status_code == 200
    assert 'data-field="status.stock.sold">1<' in body
    assert "refused: device_limit" in body
    assert body.count("<img data-chart") == 4
    assert "Pause</button>" in body


def test_dashboard_numbers_equal_drop_status(client, merchandiser, busy_drop):
    figures = client.get(reverse("admin:waitingroom_dropqueue_dashboard_json", args=[busy_drop.pk])).json()
    out = StringIO()
    call_command("drop_status", "air", "--json", stdout=out)
    assert figures["status"] == json.loads(out.getvalue())
    assert figures["status"]["queue"]["serving"] == 15
    assert figures["admission_rate"]["set"] == 5
    assert figures["bots"] == {"blocked": {"device_limit": 1}, "flagged": {}, "parked": 0}
    assert figures["conversion"] == round(1 / 15, 4)


def test_charts_are_svg_drawn_from_the_tick_samples(client, merchandiser, busy_drop):
    assert len(dashboard.series_get(drop_id=busy_drop.pk)) == 4
    response = client.get(reverse("admin:waitingroom_dropqueue_chart", args=[busy_drop.pk, "queue"]))
    assert response["Content-Type"] == "image/svg+xml"
    assert "<polyline" in response.content.decode()
    missing = client.get(reverse("admin:waitingroom_dropqueue_chart", args=[busy_drop.pk, "nope"]))
    assert missing.status_code == 404


def test_controls_pause_resume_end_and_reconcile(client, merchandiser, busy_drop):
    def control(action):
        return client.post(reverse("admin:waitingroom_dropqueue_control", args=[busy_drop.pk, action]))

    assert control("pause").status_code == 302
    assert Drop.objects.get(pk=busy_drop.pk).paused is True
    control("resume")
    assert Drop.objects.get(pk=busy_drop.pk).paused is False
    assert control("reconcile").status_code == 302
    control("end")
    assert Drop.objects.get(pk=busy_drop.pk).ends_at is not None
    assert control("explode").status_code == 404


def test_dashboard_refuses_a_shopper(client, busy_drop):
    client.force_login(UserFactory())
    for name in ("dashboard", "dashboard_json"):
        response = client.get(reverse(f"admin:waitingroom_dropqueue_{name}", args=[busy_drop.pk]))
        assert response.status_code == 302
        assert "/admin/login/" in response["Location"]
    response = client.post(reverse("admin:waitingroom_dropqueue_control", args=[busy_drop.pk, "end"]))
    assert response.status_code == 302
    assert Drop.objects.get(pk=busy_drop.pk).ends_at is None
