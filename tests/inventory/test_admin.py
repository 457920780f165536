"""Merchandisers in Django admin: scheduling, validation, quantity changes, actions, permissions."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission
from django.urls import reverse
from django.utils import timezone

from inventory import selectors, services
from inventory.models import Drop, DropState
from tests.factories import ProductFactory, UserFactory

pytestmark = pytest.mark.django_db


def form_data(product, **overrides):
    now = timezone.now()
    data = {
        "slug": "spring-drop",
        "product": product.pk,
        "prequeue_opens_at_0": (now + timedelta(hours=1)).strftime("%Y-%m-%d"),
        "prequeue_opens_at_1": (now + timedelta(hours=1)).strftime("%H:%M:%S"),
        "starts_at_0": (now + timedelta(hours=2)).strftime("%Y-%m-%d"),
        "starts_at_1": (now + timedelta(hours=2)).strftime("%H:%M:%S"),
        "ends_at_0": "",
        "ends_at_1": "",
        "quantity": 50,
        "per_customer_limit": 1,
        "admission_rate": 500,
        "checkout_window": 300,
    }
    data.update(overrides)
    return data


def test_merchandisers_group_has_only_what_running_drops_needs():
    granted = set(
        Group.objects.get(name="Merchandisers").permissions.values_list("content_type__app_label", "codename")
    )
    assert granted == {
        ("inventory", "add_product"),
        ("inventory", "change_product"),
        ("inventory", "view_product"),
        ("inventory", "add_drop"),
        ("inventory", "change_drop"),
        ("inventory", "view_drop"),
        ("inventory", "view_order"),
        ("waitingroom", "view_dropqueue"),
        ("waitingroom", "change_dropqueue"),
    }
    assert not Permission.objects.filter(group__name="Merchandisers", codename__startswith="delete_").exists()


def test_merchandiser_schedules_a_drop_and_it_is_armed(client, merchandiser):
    product = ProductFactory()
    response = client.post(reverse("admin:inventory_drop_add"), form_data(product))
    assert response.status_code == 302, response.content
    drop = Drop.objects.get(slug="spring-drop")
    assert drop.armed_at is not None
    assert selectors.stock_get(drop=drop).redis == 50
    assert selectors.drop_state_get(drop=drop) is DropState.SCHEDULED


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"quantity": 0}, "Ensure this value is greater than or equal to 1."),
        ({"starts_at_0": "2020-01-01", "starts_at_1": "00:00:00"}, "The pre-queue must open before the drop starts."),
    ],
)
def test_invalid_schedules_are_refused(client, merchandiser, overrides, message):
    product = ProductFactory()
    response = client.post(reverse("admin:inventory_drop_add"), form_data(product, **overrides))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Drop.objects.exists()


def test_quantity_change_moves_redis_stock_and_never_below_sold(client, merchandiser, make_drop):
    drop = make_drop(quantity=5, per_customer_limit=2, slug="live-drop")
    buyer = UserFactory()
    claim = services.unit_claim(drop=drop, shopper_id=buyer.pk, quantity=2)
    services.order_mark_paid(order=services.order_reserve(claim=claim, shopper=buyer))
    url = reverse("admin:inventory_drop_change", args=[drop.pk])
    data = form_data(drop.product, slug="live-drop", quantity=8, per_customer_limit=2)
    data.update(
        {
            "prequeue_opens_at_0": drop.prequeue_opens_at.strftime("%Y-%m-%d"),
            "prequeue_opens_at_1": drop.prequeue_opens_at.strftime("%H:%M:%S"),
            "starts_at_0": drop.starts_at.strftime("%Y-%m-%d"),
            "starts_at_1": drop.starts_at.strftime("%H:%M:%S"),
        }
    )
    assert client.post(url, data).status_code == 302
    drop.refresh_from_db()
    assert (drop.quantity, selectors.stock_get(drop=drop).redis) == (8, 6)

    response = client.post(url, {**data, "quantity": 1})
    assert response.status_code == 200
    assert "cannot go below the 2 units already sold or held" in response.content.decode()
    drop.refresh_from_db()
    assert (drop.quantity, selectors.stock_get(drop=drop).redis) == (8, 6)


def test_changelist_shows_state_and_remaining(client, merchandiser, make_drop):
    make_drop(quantity=7, slug="on-now")
    response = client.get(reverse("admin:inventory_drop_changelist"))
    body = response.content.decode()
    assert response.status_code == 200
    assert "on-now" in body
    assert '<td class="field-state">live</td>' in body
    assert '<td class="field-remaining">7</td>' in body


@pytest.mark.parametrize(
    ("action", "expected"),
    [("pause_drops", DropState.PAUSED), ("end_drops", DropState.ENDED)],
)
def test_actions_pause_and_end(client, merchandiser, drop, action, expected):
    response = client.post(
        reverse("admin:inventory_drop_changelist"), {"action": action, "_selected_action": [drop.pk]}
    )
    assert response.status_code == 302
    drop.refresh_from_db()
    assert selectors.drop_state_get(drop=drop) is expected


def test_resume_after_pause(client, merchandiser, drop):
    services.drop_pause(drop=drop)
    client.post(reverse("admin:inventory_drop_changelist"), {"action": "resume_drops", "_selected_action": [drop.pk]})
    drop.refresh_from_db()
    assert selectors.drop_state_get(drop=drop) is DropState.LIVE


def test_shoppers_cannot_open_admin(client, shopper, drop):
    client.force_login(shopper)
    response = client.get(reverse("admin:inventory_drop_changelist"))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_merchandisers_cannot_delete_drops_or_change_orders(client, merchandiser, drop):
    assert client.get(reverse("admin:inventory_drop_delete", args=[drop.pk])).status_code == 403
    assert client.get(reverse("admin:inventory_order_add")).status_code == 403
