"""A merchandiser in admin: the drops list, the drop form and the live dashboard, at desktop and mobile widths."""

import importlib
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission
from django.utils import timezone

from inventory import services as inventory_services
from inventory.models import Drop
from tests.browser.conftest import VIEWPORTS, look
from tests.factories import DropFactory, UserFactory
from waitingroom import services

pytestmark = [pytest.mark.browser, pytest.mark.slow]
# The group migrations make; a live-server test before this one may have flushed the database since.
GRANTS = [
    importlib.import_module(f"{app}.migrations.{name}").PERMISSIONS
    for app, name in (("inventory", "0002_merchandisers_group"), ("waitingroom", "0002_merchandisers_queue"))
]


def _merchandisers() -> Group:
    group, _ = Group.objects.get_or_create(name="Merchandisers")
    for app_label, codename in (grant for grants in GRANTS for grant in grants):
        group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return group


def _sign_in(page, server) -> None:
    user = UserFactory(username="merch", is_staff=True)
    user.groups.add(_merchandisers())
    page.goto(f"{server}/admin/login/?next=/admin/")
    page.fill("input[name=username]", "merch")
    page.fill("input[name=password]", "correct horse battery")
    page.click("input[type=submit]")
    page.wait_for_url(f"{server}/admin/")


def _controls(page) -> list[str]:
    return page.eval_on_selector_all(".dashboard-controls .button", "buttons => buttons.map(b => b.textContent.trim())")


@pytest.fixture
def live_drop():
    drop = DropFactory(slug="air", quantity=40, starts_at=timezone.now() - timedelta(seconds=40))
    inventory_services.drop_arm(drop=drop)
    services.queue_start(drop=drop)
    for shopper in range(700_001, 700_013):
        services.ticket_issue(drop=drop, shopper_id=shopper, require_authorization=False)
    DropFactory(slug="later", starts_at=timezone.now() + timedelta(hours=3), prequeue_opens_at=timezone.now())
    return drop


def test_merchandiser_lists_adds_and_runs_a_drop(asgi_server, browser, live_drop):
    page = browser.new_page(viewport=VIEWPORTS["desktop"])
    _sign_in(page, asgi_server)
    dashboard = f"{asgi_server}/admin/waitingroom/dropqueue/{live_drop.pk}/dashboard/"

    for name, viewport in VIEWPORTS.items():
        page.set_viewport_size(viewport)

        page.goto(f"{asgi_server}/admin/inventory/drop/")
        row = page.locator("#result_list tr", has_text="air")
        assert row.locator("td.field-state").inner_text() == "Live"
        assert row.locator("td.field-remaining").inner_text() == "40 of 40"
        assert row.locator("td.field-dashboard a").inner_text() == "Dashboard: live"
        if name == "desktop":  # the whole list is seen at 1280 px, nothing cut off
            results = page.eval_on_selector(".results", "r => [r.scrollWidth, r.clientWidth]")
            assert results[0] <= results[1], results
            right = page.eval_on_selector("#result_list", "table => table.getBoundingClientRect().right")
            assert right <= viewport["width"]
            assert page.evaluate("() => document.documentElement.scrollWidth") <= viewport["width"]
        look(page, f"merchandiser-drops-{name}")

        page.goto(f"{asgi_server}/admin/inventory/drop/add/")
        legends = page.eval_on_selector_all("fieldset h2.fieldset-heading", "hs => hs.map(h => h.textContent)")
        assert legends == ["What and when", "Stock", "Queue and checkout", "Bot protection"]
        assert page.input_value("input[name=max_accounts_per_card]") == "1"
        assert page.input_value("input[name=admitted_cap_multiple]") == "3"
        look(page, f"merchandiser-drop-form-{name}")

        page.goto(dashboard)
        assert page.inner_text("#state") == "Live"
        assert _controls(page) == ["Pause admission", "Reconcile stock", "End now…"]
        # Times in words, kept current by the page's script: never "0m ago".
        page.wait_for_function(
            "() => /^Started (4\\d|5\\d) seconds ago$|^Started 1 minute/.test("
            "document.getElementById('timeline').textContent)"
        )
        look(page, f"merchandiser-dashboard-{name}")

    # State-aware controls: pause offers resume and back.
    page.click("text=Pause admission")
    page.wait_for_selector("text=Paused air")
    assert page.inner_text("#state") == "Paused"
    assert _controls(page) == ["Resume admission", "Reconcile stock", "End now…"]
    page.click("text=Resume admission")
    page.wait_for_selector("text=Resumed air")
    assert _controls(page) == ["Pause admission", "Reconcile stock", "End now…"]

    # End now asks first; saying no changes nothing.
    page.click("text=End now…")
    page.wait_for_selector("text=This cannot be undone.")
    look(page, "merchandiser-end-confirm-mobile")
    page.click("text=No, keep it running")
    page.wait_for_url(dashboard)
    assert Drop.objects.get(pk=live_drop.pk).ends_at is None
    page.click("text=End now…")
    page.click("text=Yes, end air now")
    page.wait_for_selector("text=Ended air")
    assert page.inner_text("#state") == "Ended"
    assert _controls(page) == ["Reconcile stock"]
    assert Drop.objects.get(pk=live_drop.pk).ends_at is not None
    assert re.match(r"Ended \d+ seconds? ago", page.inner_text("#timeline"))

    # In the waiting rooms the entry opens the dashboard.
    page.goto(f"{asgi_server}/admin/waitingroom/dropqueue/")
    assert page.inner_text("tr:has-text('air') td.field-state") == "Ended"
    page.click("td.field-dashboard_link >> text=air")
    page.wait_for_url(dashboard)
    page.close()
