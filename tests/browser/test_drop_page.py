"""A signed-in shopper joins from the drop page, watches the position fall over the websocket, is admitted."""

import contextlib
import re
import threading
import time

import pytest

from flashsale.checkout import services as checkout_services
from inventory import services as inventory_services
from inventory.models import Order, OrderStatus
from tests.factories import DropFactory, UserFactory
from waitingroom import selectors, services

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@contextlib.contextmanager
def _ticking(drop):
    """Do what Celery beat does: place the holds of those next in line and tick admission, every half second."""
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            checkout_services.holds_place_due(drop=drop, budget_seconds=0.5)
            services.queue_admit_batch(drop=drop)
            stop.wait(0.5)

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield
    finally:
        stop.set()
        ticker.join()


def _drop_with_six_ahead(settings):
    settings.POW_COST = 300
    selectors.drop_cache_clear()
    # The test browser is an automated, headless Chromium: exactly what bot mitigation flags. These tests
    # are about the queue's experience, so the drop's bot threshold is set out of reach.
    drop = DropFactory(slug="air", quantity=50, admission_rate=2, checkout_window=120, bot_threshold=1000)
    inventory_services.drop_arm(drop=drop)
    services.queue_start(drop=drop)
    for shopper_id in range(900_001, 900_007):  # six shoppers are already ahead
        services.ticket_issue(drop=drop, shopper_id=shopper_id, require_authorization=False)
    UserFactory(username="ann")
    return drop


def _sign_in_hold_and_join(page, server, card="pm_card_visa"):
    page.goto(f"{server}/accounts/login/?next=/drops/air/")
    page.fill("input[name=username]", "ann")
    page.fill("input[name=password]", "correct horse battery")
    page.click("button[type=submit]")
    page.wait_for_url(f"{server}/drops/air/")
    assert page.is_disabled("#join")  # no queue without a card
    if card != "pm_card_visa":  # a card made by Stripe.js in real life; localstripe's has no card form
        page.evaluate("(id) => document.getElementById('card').add(new Option('3-D Secure test card', id))", card)
    page.select_option("#card", card)
    page.click("#hold")
    page.wait_for_selector("text=Card saved.")
    page.click("#join")
    page.wait_for_selector("text=You are number 7 in line")


def test_shopper_holds_card_joins_watches_position_fall_is_admitted_and_buys(
    asgi_server, browser, settings, redis, stripe_settings
):
    drop = _drop_with_six_ahead(settings)

    page = browser.new_page()
    sockets = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    _sign_in_hold_and_join(page, asgi_server)

    with _ticking(drop):
        positions = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = page.inner_text("#status")
            match = re.search(r"number (\d+) in line", status)
            if match and (not positions or positions[-1] != int(match.group(1))):
                positions.append(int(match.group(1)))
            if status.startswith("You're in!"):
                break
            time.sleep(0.05)
        assert page.inner_text("#status").startswith("You're in!")
        assert page.is_visible("#buy")
        assert page.inner_text("#checkout-left").endswith("left to buy")
        page.click("#buy")
        page.wait_for_selector("text=Bought!")
    assert positions[0] == 7
    assert positions == sorted(positions, reverse=True)
    assert len(positions) >= 3  # it fell step by step, as the ticks came in
    assert sockets == [f"{asgi_server.replace('http', 'ws')}/ws/drops/air/"]
    assert page.get_attribute("#status", "aria-live") == "polite"
    page.screenshot(path="var/browser-bought.png")
    order = Order.objects.get(drop=drop)
    assert (order.status, order.shopper.username, order.quantity) == (OrderStatus.PAID, "ann", 1)


def test_with_the_websocket_down_polling_survives_reads_that_get_no_answer_and_learns_the_admission(
    asgi_server, browser, settings, redis, stripe_settings
):
    drop = _drop_with_six_ahead(settings)
    page = browser.new_page()
    warnings = []  # drop.js warns of each poll that failed
    page.on("console", lambda message: warnings.append(message.text) if message.type == "warning" else None)
    # Given a network where the drop's websocket never stays up and the first two position reads fail
    page.route_web_socket(re.compile(r"/ws/drops/air/$"), lambda ws: ws.close())
    failed = []

    def position_read(route):
        if route.request.method == "GET" and len(failed) < 2:
            failed.append(route.request.url)
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route(re.compile(r"/api/drops/air/queue$"), position_read)
    _sign_in_hold_and_join(page, asgi_server)

    # When the drop admits
    with _ticking(drop):
        # Then the page keeps polling past the failed reads and learns of the admission
        page.wait_for_selector("text=You're in!", timeout=40_000)
    assert len(failed) == 2
    assert page.is_visible("#buy")
    # Only the reads cut off failed: the drop's own answer (serving under "queue") renders too
    assert warnings
    assert all("Failed to fetch" in text for text in warnings), warnings


def test_three_d_secure_is_asked_when_the_hold_is_placed_and_the_shopper_keeps_the_place(
    asgi_server, browser, settings, redis, stripe_settings
):
    from payments.models import Authorization
    from payments.stripe_client import stripe_client
    from tests.payments.conftest import three_d_secure_method

    # Given a shopper whose card asks for 3-D Secure, six shoppers ahead
    drop = _drop_with_six_ahead(settings)
    page = browser.new_page()
    _sign_in_hold_and_join(page, asgi_server, card=three_d_secure_method(stripe_client()))
    assert Authorization.objects.get(drop=drop).status == "scheduled"  # nothing held while far from the turn

    # When the turn comes near and the hold is placed, the bank's check opens on the page; the shopper passes it
    with _ticking(drop):
        page.wait_for_selector("text=Complete authentication", timeout=30_000)
        page.screenshot(path="var/browser-three-d-secure.png")
        page.click("text=Complete authentication")

        # Then the hold counts, the shopper kept their place, is admitted and buys in one click
        page.wait_for_selector("text=You're in!", timeout=30_000)
        page.click("#buy")
        page.wait_for_selector("text=Bought!")
    authorization = Authorization.objects.get(drop=drop)
    assert authorization.status == "captured"
    entry = selectors.entry_get(drop=drop, shopper_id=authorization.shopper_id)
    assert (entry.status.value, entry.ticket) == ("purchased", 7)
