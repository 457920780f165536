"""The Redis token bucket every Stripe call goes through, shared by all processes."""

import threading
import time

import pytest

from payments.errors import PaymentsBusy
from payments.stripe_client import bucket_shape, stripe_tokens_take


def grants_per_window(times, window=1.0):
    """Return the largest number of grants inside any window of ``window`` seconds."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] > window:
            start += 1
        best = max(best, end - start + 1)
    return best


@pytest.fixture
def small_limit(settings):
    settings.STRIPE_RATE_LIMIT = 10
    settings.STRIPE_RATE_BURST = 3
    return settings


def test_the_bucket_shape_keeps_any_second_under_the_rate(small_limit):
    assert bucket_shape() == (7.0, 3)


def test_eight_threads_hammering_never_get_more_than_the_rate_in_any_second(small_limit):
    granted: list[float] = []
    denied = []
    lock = threading.Lock()
    stop = time.monotonic() + 3.0

    def hammer():
        while time.monotonic() < stop:
            try:
                stripe_tokens_take()
            except PaymentsBusy as busy:
                with lock:
                    denied.append(busy.wait_ms)
            else:
                with lock:
                    granted.append(time.monotonic())

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert grants_per_window(granted) <= 10
    # Over 3 s: the burst of 3 plus 7 per second, give or take the last partial token.
    assert 22 <= len(granted) <= 24
    assert denied
    assert all(0 < wait <= 1000 / 7 + 1 for wait in denied)


def test_a_denied_caller_is_told_how_long_to_wait(small_limit):
    for _ in range(3):
        stripe_tokens_take()

    with pytest.raises(PaymentsBusy) as busy:
        stripe_tokens_take()

    assert 0 < busy.value.wait_ms <= 143
    assert busy.value.retry_after == 1
    assert busy.value.code == "payments_busy"


def test_several_tokens_are_taken_at_once_or_not_at_all(small_limit):
    stripe_tokens_take(count=2)

    with pytest.raises(PaymentsBusy):
        stripe_tokens_take(count=3)
    stripe_tokens_take(count=1)  # the refused take left the last token in the bucket


def test_background_work_leaves_a_token_for_shoppers(small_limit):
    stripe_tokens_take(count=2)  # one token left

    with pytest.raises(PaymentsBusy):
        stripe_tokens_take(background=True)
    stripe_tokens_take()  # a shopper's capture still gets it


def test_a_capture_waits_for_its_turn_rather_than_being_refused(small_limit):
    from payments.stripe_client import stripe_token_await

    # Given an empty bucket (three tokens, seven more a second)
    stripe_tokens_take(count=3)

    # When a capture asks for a token, allowed to wait a second for it
    started = time.monotonic()
    stripe_token_await(seconds=1.0)

    # Then it gets the next one as it comes, about a seventh of a second later
    assert 0.05 <= time.monotonic() - started < 0.95  # well before the second it may wait
    # and a capture that may not wait is refused at once, with the wait
    with pytest.raises(PaymentsBusy):
        stripe_token_await(seconds=0)


def test_back_pressure_is_logged_at_info_and_counted_not_as_an_error(make_drop, login, settings, caplog):
    import logging

    from flashsale.api import BACKPRESSURE
    from tests.payments.conftest import admit, authorize, post_json

    # Given an admitted shopper, and a Stripe budget spent that the purchase may not wait for
    drop = make_drop()
    client = login()
    authorize(client, drop)
    admit(drop, client.shopper.pk)
    settings.STRIPE_RATE_LIMIT, settings.STRIPE_RATE_BURST, settings.STRIPE_CAPTURE_WAIT_SECONDS = 10, 3, 0
    stripe_tokens_take(count=3)
    before = BACKPRESSURE.labels("payments_busy")._value.get()
    caplog.set_level(logging.INFO)

    # When the shopper buys
    response = post_json(client, f"/api/drops/{drop.slug}/purchase")

    # Then the answer is 503 with Retry-After, logged once at INFO and counted, with no ERROR line
    assert (response.status_code, response.json()["error"]["code"]) == (503, "payments_busy")
    assert response["Retry-After"]
    assert [r.levelname for r in caplog.records if r.name == "django.request"] == []
    assert [r.getMessage() for r in caplog.records if r.name == "flashsale.api"] == [
        f"answered 503 payments_busy (retry after {response['Retry-After']} s)"
    ]
    assert BACKPRESSURE.labels("payments_busy")._value.get() == before + 1
