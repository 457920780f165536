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
