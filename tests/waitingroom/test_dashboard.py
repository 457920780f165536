"""The live dashboard: for merchandisers only, the same figures as drop_status, live charts, controls."""

import json
import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

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
    assert "Pause admission</button>" in body


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
    response = client.post(
        reverse("admin:waitingroom_dropqueue_control", args=[busy_drop.pk, "end"]), {"confirm": "yes"}
    )
    assert response.status_code == 302
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


def _controls(body: str) -> list[str]:
    return re.findall(r'class="button(?: default)? control-(\w+)"', body)


def _dashboard(client, drop) -> str:
    return client.get(reverse("admin:waitingroom_dropqueue_dashboard", args=[drop.pk])).content.decode()


def test_only_the_controls_that_make_sense_now_are_offered(client, merchandiser, busy_drop):
    assert _controls(_dashboard(client, busy_drop)) == ["pause", "reconcile", "end"]
    inventory_services.drop_pause(drop=busy_drop)
    assert _controls(_dashboard(client, busy_drop)) == ["resume", "reconcile", "end"]
    inventory_services.drop_resume(drop=busy_drop)
    inventory_services.drop_end(drop=busy_drop)
    body = _dashboard(client, busy_drop)
    assert _controls(body) == ["reconcile"]
    assert 'class="state-badge state-ended" id="state">Ended<' in body


def test_a_sold_out_drop_offers_no_pause_and_says_sold_out(client, merchandiser):
    drop = DropFactory(slug="gone", quantity=1)
    inventory_services.drop_arm(drop=drop)
    buyer = UserFactory()
    claim = inventory_services.unit_claim(drop=drop, shopper_id=buyer.pk)
    inventory_services.order_mark_paid(order=inventory_services.order_reserve(claim=claim, shopper=buyer))
    body = _dashboard(client, drop)
    assert _controls(body) == ["reconcile", "end"]
    assert 'id="state">Sold out<' in body


def test_a_viewer_without_change_permission_sees_no_controls(client, busy_drop):
    from django.contrib.auth.models import Permission

    viewer = UserFactory(username="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_dropqueue"))
    client.force_login(viewer)
    body = _dashboard(client, busy_drop)
    assert "Queue</h2>" in body
    assert _controls(body) == []


def test_a_control_that_does_not_fit_the_state_changes_nothing(client, merchandiser, busy_drop):
    inventory_services.drop_end(drop=busy_drop)
    ended_at = Drop.objects.get(pk=busy_drop.pk).ends_at
    for action in ("pause", "resume", "end"):
        response = client.post(
            reverse("admin:waitingroom_dropqueue_control", args=[busy_drop.pk, action]), {"confirm": "yes"}, follow=True
        )
        assert f"Cannot {action} air now (Ended)." in response.content.decode()
    drop = Drop.objects.get(pk=busy_drop.pk)
    assert (drop.paused, drop.ends_at) == (False, ended_at)


def test_resume_is_refused_when_the_drop_is_not_paused(client, merchandiser, busy_drop):
    url = reverse("admin:waitingroom_dropqueue_control", args=[busy_drop.pk, "resume"])
    assert "Cannot resume air now (Live)." in client.post(url, follow=True).content.decode()
    assert Drop.objects.get(pk=busy_drop.pk).paused is False


def test_end_now_asks_first_and_ends_only_when_confirmed(client, merchandiser, busy_drop):
    unconfirmed = client.post(reverse("admin:waitingroom_dropqueue_control", args=[busy_drop.pk, "end"]))
    confirm_url = reverse("admin:waitingroom_dropqueue_end_confirm", args=[busy_drop.pk])
    assert (unconfirmed.status_code, unconfirmed["Location"]) == (302, confirm_url)
    assert Drop.objects.get(pk=busy_drop.pk).ends_at is None

    assert f'href="{confirm_url}">End now…</a>' in _dashboard(client, busy_drop)
    page = client.get(confirm_url).content.decode()
    assert "This cannot be undone." in page
    assert '<input type="hidden" name="confirm" value="yes">' in page
    assert "Yes, end air now</button>" in page
    assert Drop.objects.get(pk=busy_drop.pk).ends_at is None  # looking at the question changes nothing

    response = client.post(
        reverse("admin:waitingroom_dropqueue_control", args=[busy_drop.pk, "end"]), {"confirm": "yes"}, follow=True
    )
    assert "Ended air: nobody can join or buy any more." in response.content.decode()
    assert Drop.objects.get(pk=busy_drop.pk).ends_at is not None
    again = client.get(confirm_url, follow=True)
    assert "Nothing to end: air has already ended." in again.content.decode()


def test_end_now_is_refused_to_a_viewer(client, busy_drop):
    from django.contrib.auth.models import Permission

    viewer = UserFactory(username="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_dropqueue"))
    client.force_login(viewer)
    assert client.get(reverse("admin:waitingroom_dropqueue_end_confirm", args=[busy_drop.pk])).status_code == 403
    response = client.post(
        reverse("admin:waitingroom_dropqueue_control", args=[busy_drop.pk, "end"]), {"confirm": "yes"}
    )
    assert response.status_code == 403
    assert Drop.objects.get(pk=busy_drop.pk).ends_at is None


def test_the_dashboard_says_times_in_words(client, merchandiser):
    now = timezone.now()
    drop = DropFactory(slug="fresh", starts_at=now - timedelta(seconds=40), ends_at=now + timedelta(minutes=30))
    inventory_services.drop_arm(drop=drop)
    body = _dashboard(client, drop)
    assert re.search(r'id="timeline"[^>]*>Started 4\d seconds ago, ends in 29 minutes 5\d seconds<', body)
    assert f'data-starts-at="{drop.starts_at:%Y-%m-%dT%H:%M:%S}Z"' in body


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0, "0 seconds"),
        (1, "1 second"),
        (40, "40 seconds"),
        (60, "1 minute"),
        (125, "2 minutes 5 seconds"),
        (3600, "1 hour"),
        (3_725, "1 hour 2 minutes"),
        (90_061, "1 day 1 hour"),
    ],
)
def test_durations_in_words(seconds, words):
    assert dashboard.duration_words(seconds) == words


def test_timeline_words_before_during_and_after():
    now = timezone.now()
    starts, ends = now + timedelta(seconds=90), now + timedelta(hours=2)
    assert dashboard.timeline_words(starts_at=starts, ends_at=None, now=now) == "Starts in 1 minute 30 seconds"
    assert (
        dashboard.timeline_words(starts_at=starts, ends_at=ends, now=now + timedelta(seconds=130))
        == "Started 40 seconds ago, ends in 1 hour 57 minutes"
    )
    assert dashboard.timeline_words(starts_at=starts, ends_at=ends, now=ends + timedelta(minutes=3)) == (
        "Ended 3 minutes ago"
    )
