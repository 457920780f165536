"""Every page a shopper sees, in Chromium at desktop and mobile widths: axe-core finds no serious accessibility
violation, a screenshot of each is kept (var/artifacts/screenshots), and the page says what it should."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from inventory import services as inventory_services
from inventory.models import Order, OrderStatus
from tests.factories import DropFactory, UserFactory
from waitingroom import selectors, services

from .conftest import VIEWPORTS, look

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "correct horse battery"


@pytest.fixture
def shop(settings, redis, stripe_settings):
    settings.POW_COST = 300
    selectors.drop_cache_clear()
    live = DropFactory(slug="air", quantity=50, product__title="Air Flash 1", product__price="129.00",
                       product__description="A limited run of 50 pairs.", bot_threshold=1000)  # fmt: skip
    soon = DropFactory(slug="soon", product__title="Night Runner",
                       prequeue_opens_at=timezone.now() + timedelta(hours=1),
                       starts_at=timezone.now() + timedelta(hours=3))  # fmt: skip
    for drop in (live, soon):
        inventory_services.drop_arm(drop=drop)
    services.queue_start(drop=live)
    ann = UserFactory(username="ann", email="ann@example.com")
    bought = DropFactory(slug="gone", quantity=1, product__title="Sold Shoe")
    inventory_services.drop_arm(drop=bought)
    order = Order.objects.create(drop=bought, shopper=ann, status=OrderStatus.PAID, quantity=1, amount="89.00",
                                 currency="usd", claim_id="c-gone-1")  # fmt: skip
    return {"live": live, "soon": soon, "order": order}


def sign_in(page, server):
    page.goto(f"{server}/accounts/login/")
    page.fill("input[name=username]", "ann")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server}/")


def card_given_and_joined(browser, server, slug):
    """Ann signed in, her card given on the drop's page and Join pressed; the page."""
    page = browser.new_page()
    sign_in(page, server)
    page.goto(f"{server}/drops/{slug}/")
    page.select_option("#card", "pm_card_visa")
    page.click("#hold")
    page.wait_for_selector("text=Card saved.")
    page.click("#join")
    return page


@pytest.mark.parametrize("width", list(VIEWPORTS))
def test_every_shopper_page_is_accessible_and_readable(asgi_server, browser, shop, width):
    context = browser.new_context(viewport=VIEWPORTS[width], timezone_id="America/New_York", locale="en-US")
    page = context.new_page()
    missing = []
    page.on("response", lambda response: missing.append(response.url) if response.status == 404 else None)

    # A visitor
    visitor_pages = [
        ("home", "/"),
        ("drop-visitor", "/drops/air/"),
        ("sign-in", "/accounts/login/"),
        ("sign-up", "/accounts/signup/?next=/drops/air/"),
        ("password-reset", "/accounts/password_reset/"),
    ]
    for name, path in visitor_pages:
        page.goto(f"{asgi_server}{path}")
        look(page, name)
    page.goto(f"{asgi_server}/drops/soon/")
    # Times are the shopper's own (New York here), with a live countdown, never raw ISO or a state's code name
    when = page.inner_text("#when")
    assert re.search(r"Sale starts \w+ \d+, \d{4}, \d+:\d\d [AP]M \(starts in 2 h 5\d min\)", when), when
    assert page.inner_text("#state") == "Coming soon"
    look(page, "drop-scheduled")

    # A shopper
    sign_in(page, asgi_server)
    page.goto(f"{asgi_server}/drops/air/")
    page.wait_for_selector("#hold")
    assert page.inner_text("#state") == "On sale now"
    assert "$129.00" in page.inner_text(".price")
    look(page, "drop-shopper")
    shopper_pages = [
        ("orders", "/orders/"),
        ("order", f"/orders/{shop['order'].pk}/"),
        ("profile", "/accounts/profile/"),
        ("password-change", "/accounts/password_change/"),
    ]
    for name, path in shopper_pages:
        page.goto(f"{asgi_server}{path}")
        look(page, name)
    # The orders table fits the phone's width (no sideways scrolling of the page)
    page.goto(f"{asgi_server}/orders/")
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    # After buying, the drop page is about the order alone
    page.goto(f"{asgi_server}/drops/gone/")
    assert page.inner_text("#bought").startswith("You bought this.")
    assert page.locator("#card-section, #join, altcha-widget").count() == 0
    look(page, "drop-bought")
    # No page asks for something that is not there (the favicon, say); the API's 404s are answers
    assert not [url for url in missing if "/api/" not in url], missing
    context.close()


def test_the_skip_link_is_the_first_stop_of_the_keyboard(asgi_server, browser, shop):
    page = browser.new_page()
    page.goto(f"{asgi_server}/drops/air/")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "main"


def test_a_refused_join_leaves_the_widget_saying_so_not_verified(asgi_server, browser, shop, settings):
    # Given a drop whose bot check refuses this headless browser
    live = shop["live"]
    live.bot_threshold = 1
    live.save()
    selectors.drop_cache_clear()
    page = card_given_and_joined(browser, asgi_server, "air")
    page.wait_for_selector("#error:has-text('automated')", timeout=30_000)
    # Then the widget shows the refusal too
    state = page.evaluate("() => document.getElementById('pow').getState()")
    assert state != "verified"
    look(page, "drop-refused")


def test_what_the_page_hides_stays_hidden(asgi_server, browser, shop):
    # Given a shopper on a drop page before joining
    page = browser.new_page()
    sign_in(page, asgi_server)
    page.goto(f"{asgi_server}/drops/air/")
    page.wait_for_selector("#hold")
    # Then neither Buy nor the progress bar shows (a button's display rule once overrode `hidden`)
    assert not page.is_visible("#buy")
    assert not page.is_visible("#progress")
    assert not page.is_visible("#orders-link")


def test_a_pre_queued_shopper_sees_the_drawn_place_at_the_start_and_what_a_pause_means(
    asgi_server, browser, shop, settings
):
    import threading

    from waitingroom import realtime

    # Given a drop whose sale starts in a few seconds, and a shopper in its waiting room with a card
    starts = timezone.now() + timedelta(seconds=6)
    drop = DropFactory(slug="soon-start", quantity=5, prequeue_opens_at=timezone.now() - timedelta(minutes=1),
                       starts_at=starts, admission_rate=1, bot_threshold=1000)  # fmt: skip
    inventory_services.drop_arm(drop=drop)
    for shopper_id in range(800_001, 800_004):  # three more in the pre-queue
        services.ticket_issue(drop=drop, shopper_id=shopper_id, require_authorization=False)
    page = card_given_and_joined(browser, asgi_server, "soon-start")
    page.wait_for_selector("text=You are in the waiting room.")
    assert page.inner_text("#state") == "Waiting room open"

    # What beat does at the start, short of admitting anyone: draw the pre-queue, tell the sockets
    stop = threading.Event()

    def beat():
        while not stop.wait(0.5):
            if timezone.now() >= drop.starts_at:
                services.queue_start(drop=drop)
            realtime.drop_publish(drop=drop)

    ticker = threading.Thread(target=beat, daemon=True)
    ticker.start()
    try:
        # When the sale starts, the page shows the drawn place within a couple of seconds of the start
        page.wait_for_selector("text=in line", timeout=15_000)
        drawn_after = (timezone.now() - starts).total_seconds()
        assert drawn_after < 3, drawn_after
        assert page.inner_text("#state") == "On sale now"
        # and when the shop pauses, it says what that means for the shopper
        inventory_services.drop_pause(drop=drop)  # the beat thread's drop object too
        selectors.drop_cache_clear()
        page.wait_for_selector("text=The shop has paused the drop. You keep your place", timeout=10_000)
        assert page.is_visible("#paused-note")
        assert page.inner_text("#state") == "Paused"
    finally:
        stop.set()
        ticker.join()


@pytest.fixture
def eager_tasks():
    """Celery tasks run in the test's process when sent (after commit), as the payments tests run them."""
    from flashsale.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def test_a_card_over_its_accounts_limit_is_refused_with_what_to_do_next(asgi_server, browser, shop, eager_tasks):
    from django.test import Client

    from flashsale.checkout import services as checkout_services
    from payments.models import Authorization
    from tests.payments.conftest import authorize

    # Given a drop that allows one account per card, and another account already in line with the same card
    live = shop["live"]
    live.max_accounts_per_card = 1
    live.save()
    selectors.drop_cache_clear()
    other = Client(SERVER_NAME="localhost")  # the live server allows only its own host names
    other.force_login(UserFactory())
    given = authorize(other, live)
    assert given.status_code == 202, given.content
    services.ticket_issue(drop=live, shopper_id=int(other.session["_auth_user_id"]))

    # When Ann gives the same card, joins, and her hold is placed (after the other one's)
    page = card_given_and_joined(browser, asgi_server, "air")
    page.wait_for_selector("text=in line")
    checkout_services.holds_place_due(drop=live, budget_seconds=20)
    services.queue_admit_batch(drop=live)  # the tick tells her page

    # Then the page says what happened and what to do, and lets her give another card
    page.wait_for_selector("text=This card is already used by another account for this drop.", timeout=15_000)
    page.wait_for_selector("#card-status:has-text('Give another card to keep your place')")
    assert page.is_visible("#hold")
    assert page.is_enabled("#card")
    # and her hold was released at Stripe at once, not left for the drop's end
    refused = Authorization.objects.get(drop=live, shopper__username="ann")
    assert (refused.status, refused.failure_code) == ("failed", "card_limit")
    look(page, "drop-card-limit")
