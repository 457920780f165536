"""Merchandisers watch waiting rooms in admin and release parked shoppers."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from inventory import services as inventory_services
from tests.factories import DropFactory, UserFactory
from waitingroom import selectors, services
from waitingroom.selectors import EntryStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def drop_with_suspects():
    drop = DropFactory(slug="air", bot_action="park")
    inventory_services.drop_arm(drop=drop)
    services.queue_start(drop=drop)
    services.ticket_issue(drop=drop, shopper_id=10_000, require_authorization=False)
    parked = UserFactory(username="suspect", date_joined=timezone.now() - timedelta(days=9))
    services.ticket_issue(
        drop=drop, shopper_id=parked.pk, require_authorization=False, park_reasons=["webdriver", "headless"]
    )
    services.bots_count_blocked(drop=drop, reasons=["device_limit", "device_limit", "automation_user_agent"])
    return drop, parked


def test_waiting_room_shows_queue_and_bot_counts_by_reason(client, merchandiser, drop_with_suspects):
    drop, _parked = drop_with_suspects
    changelist = client.get(reverse("admin:waitingroom_dropqueue_changelist")).content.decode()
    assert '<td class="field-queue_length">2</td>' in changelist
    assert '<td class="field-blocked_total">3</td>' in changelist
    assert '<td class="field-flagged_total">2</td>' in changelist
    assert '<td class="field-state">Live</td>' in changelist
    page = client.get(reverse("admin:waitingroom_dropqueue_change", args=[drop.pk])).content.decode()
    assert "automation_user_agent: 1, device_limit: 2" in page
    assert "headless: 1, webdriver: 1" in page
    assert "suspect" in page


def test_a_waiting_room_entry_opens_its_live_dashboard(client, merchandiser, drop_with_suspects):
    drop, _parked = drop_with_suspects
    changelist = client.get(reverse("admin:waitingroom_dropqueue_changelist")).content.decode()
    dashboard = reverse("admin:waitingroom_dropqueue_dashboard", args=[drop.pk])
    assert f'<td class="field-dashboard_link"><a href="{dashboard}">air</a></td>' in changelist
    assert reverse("admin:waitingroom_dropqueue_change", args=[drop.pk]) not in changelist
    # The change page (bot refusals, parked shoppers to release) is one click away from the dashboard.
    page = client.get(dashboard).content.decode()
    assert f'href="{reverse("admin:waitingroom_dropqueue_change", args=[drop.pk])}">Bot refusals and parked' in page


def test_merchandiser_releases_a_parked_shopper(client, merchandiser, drop_with_suspects):
    drop, parked = drop_with_suspects
    url = reverse("admin:waitingroom_dropqueue_release", args=[drop.pk, parked.pk])
    assert client.get(url).status_code == 405
    response = client.post(url)
    assert response.status_code == 302
    entry = selectors.entry_get(drop=drop, shopper_id=parked.pk)
    assert (entry.status, entry.ticket) == (EntryStatus.WAITING, 2)
    assert selectors.bot_stats_get(drop_id=drop.pk).parked == {}
    again = client.post(url, follow=True)
    assert "was not parked" in again.content.decode()


def test_shoppers_cannot_release(client, drop_with_suspects):
    drop, parked = drop_with_suspects
    client.force_login(UserFactory())
    response = client.post(reverse("admin:waitingroom_dropqueue_release", args=[drop.pk, parked.pk]))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
    assert selectors.bot_stats_get(drop_id=drop.pk).parked == {parked.pk: ["webdriver", "headless"]}
