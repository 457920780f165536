"""Merchandisers in Django admin: scheduling, validation, quantity changes, actions, permissions."""

import inspect
import re
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
        "admitted_cap_multiple": 3,
        "checkout_window": 300,
        "bot_threshold": 60,
        "bot_action": "refuse",
        "max_accounts_per_device": 2,
        "max_accounts_per_card": 1,
        "min_account_age": 0,
    }
    data.update(overrides)
    return data


SETTINGS = [
    "per_customer_limit",
    "admission_rate",
    "admitted_cap_multiple",
    "checkout_window",
    "bot_threshold",
    "bot_action",
    "max_accounts_per_device",
    "max_accounts_per_card",
    "min_account_age",
]


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
    assert '<td class="field-state">Live</td>' in body
    assert '<td class="field-remaining">7 of 7</td>' in body


def test_changelist_says_state_and_start_in_words_and_links_the_dashboard_by_its_real_state(
    client, merchandiser, make_drop
):
    later = timezone.now() + timedelta(hours=2, minutes=1)
    make_drop(quantity=3, slug="soon", prequeue_opens_at=later, starts_at=later, is_draft=True)
    gone = make_drop(quantity=1, slug="gone")
    buyer = UserFactory()
    services.order_mark_paid(
        order=services.order_reserve(claim=services.unit_claim(drop=gone, shopper_id=buyer.pk), shopper=buyer)
    )
    body = client.get(reverse("admin:inventory_drop_changelist")).content.decode()
    rows = dict(re.findall(r"<tr>.*?>(soon|gone)</a>(.*?)</tr>", body, re.S))
    assert '<td class="field-state">Scheduled (draft, hidden)</td>' in rows["soon"]
    assert '<td class="field-starts">in 2\xa0hours' in rows["soon"]
    assert '<td class="field-state">Sold out</td>' in rows["gone"]
    assert '<td class="field-remaining">0 of 1</td>' in rows["gone"]
    assert '<td class="field-starts">a minute ago<br><time class="moment" datetime="' in rows["gone"]
    dashboard = reverse("admin:waitingroom_dropqueue_dashboard", args=[gone.pk])
    assert f'<a href="{dashboard}">Dashboard: sold out</a>' in rows["gone"]
    # What used to push the list past 1280 px is gone: one column per thing that matters.
    assert re.findall(r'<th scope="col" class="[^"]*column-(\w+)', body) == [
        "slug",
        "product",
        "state",
        "remaining",
        "starts",
        "dashboard",
    ]


def test_add_form_offers_every_setting_of_schedule_drop_grouped_with_its_defaults(client, merchandiser):
    body = client.get(reverse("admin:inventory_drop_add")).content.decode()
    legends = re.findall(r'<h2 id="fieldset-0-\d+-heading" class="fieldset-heading">(.*?)</h2>', body)
    assert legends == ["What and when", "Stock", "Queue and checkout", "Bot protection"]
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(services.drop_schedule).parameters.items()
        if name in SETTINGS
    }
    for name in SETTINGS:
        assert f'name="{name}"' in body
        if name in defaults:  # the form starts where schedule_drop does
            assert re.search(rf'name="{name}" value="{defaults[name]}"', body), name
    assert '<select name="bot_action"' in body
    assert '<option value="refuse" selected>' in body
    assert "Accounts that may queue with one card." in body  # each setting is explained
    assert "test cards all share one fingerprint" in body


def test_a_drop_tuned_in_admin_keeps_every_setting(client, merchandiser):
    product = ProductFactory()
    tuned = {
        "admitted_cap_multiple": 5,
        "bot_threshold": 80,
        "bot_action": "park",
        "max_accounts_per_device": 4,
        "max_accounts_per_card": 1000,
        "min_account_age": 86400,
        "checkout_window": 120,
        "admission_rate": 50,
        "per_customer_limit": 2,
    }
    response = client.post(reverse("admin:inventory_drop_add"), form_data(product, **tuned))
    assert response.status_code == 302, response.content
    drop = Drop.objects.get(slug="spring-drop")
    assert {name: getattr(drop, name) for name in tuned} == tuned


def test_a_drop_made_in_admin_is_the_drop_schedule_drop_makes(client, merchandiser):
    product = ProductFactory(sku="same", title="Same")
    starts_at = (timezone.now() + timedelta(hours=2)).replace(microsecond=0)
    data = form_data(
        product,
        slug="from-admin",
        prequeue_opens_at_0="",
        prequeue_opens_at_1="",
        starts_at_0=starts_at.strftime("%Y-%m-%d"),
        starts_at_1=starts_at.strftime("%H:%M:%S"),
    )
    assert client.post(reverse("admin:inventory_drop_add"), data).status_code == 302
    made = Drop.objects.get(slug="from-admin")
    scheduled = services.drop_schedule(slug="from-command", title="Same", price=product.price, quantity=50,
                                       starts_at=starts_at)  # fmt: skip
    fields = ["prequeue_opens_at", "starts_at", "ends_at", "quantity", "is_draft", "paused", *SETTINGS]
    assert {name: getattr(made, name) for name in fields} == {name: getattr(scheduled, name) for name in fields}
    assert made.prequeue_opens_at == made.starts_at  # no pre-queue given: the queue opens at the start
    assert made.armed_at is not None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"max_accounts_per_card": 0}, "Ensure this value is greater than or equal to 1."),
        ({"max_accounts_per_device": 0}, "Ensure this value is greater than or equal to 1."),
        ({"admitted_cap_multiple": 0}, "Ensure this value is greater than or equal to 1."),
        ({"checkout_window": 5}, "Ensure this value is greater than or equal to 10."),
        ({"bot_action": "shrug"}, "Select a valid choice."),
        ({"min_account_age": -1}, "Ensure this value is greater than or equal to 0."),
    ],
)
def test_bad_settings_are_refused(client, merchandiser, overrides, message):
    response = client.post(reverse("admin:inventory_drop_add"), form_data(ProductFactory(), **overrides))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Drop.objects.exists()


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
