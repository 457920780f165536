"""The one way to Stripe: a client configured from settings, and the shared rate limit.

Every call first takes a token from the Redis token bucket (``stripe_tokens_take``), so all
web and worker processes together stay under ``STRIPE_RATE_LIMIT`` calls per second. Nothing
here sleeps: an empty bucket raises ``PaymentsBusy`` with the wait; background work (the hold
scheduler, cancellations) continues later, and a purchase answers ``503 payments_busy`` with
``Retry-After`` (rare: captures come first, and admission follows the holds' pace).
"""

from __future__ import annotations

import time
from decimal import Decimal
from functools import lru_cache

import stripe
from django.conf import settings

from flashsale.redis import redis_client

from .errors import PaymentsBusy
from .redis_keys import stripe_bucket_key
from .scripts import BucketResult, lua_script

# Stripe's currencies without a minor unit (amounts are sent as whole units).
ZERO_DECIMAL_CURRENCIES = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"}
)
# Network errors after which a call may be repeated with the same idempotency key.
STRIPE_NETWORK_ERRORS = (stripe.APIConnectionError, stripe.RateLimitError)


def stripe_client() -> stripe.StripeClient:
    """Return a client for the configured key, API base, timeout and retries (one per configuration)."""
    return _client(
        settings.STRIPE_SECRET_KEY,
        settings.STRIPE_API_BASE,
        float(settings.STRIPE_TIMEOUT),
        int(settings.STRIPE_MAX_NETWORK_RETRIES),
    )


@lru_cache(maxsize=8)
def _client(api_key: str, api_base: str, timeout: float, retries: int) -> stripe.StripeClient:
    # One client (and one pooled HTTP session) per configuration keeps connections warm.
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base},
        max_network_retries=retries,
        http_client=stripe.RequestsClient(timeout=timeout),
    )


def idempotency_key(kind: str, record) -> str:
    """Stripe's idempotency key for one call about ``record`` (an authorization or an order).

    The row's creation time is part of it: ids start again in a new database (a reset, another
    environment on the same Stripe account), and Stripe replays the first answer to a key for 24 hours.
    """
    return f"{kind}:{record.pk}:{int(record.created_at.timestamp() * 1_000_000):x}"


def bucket_shape() -> tuple[float, int]:
    """Return (refill per second, capacity) so that no one-second window grants more than the rate."""
    rate = int(settings.STRIPE_RATE_LIMIT)
    capacity = max(1, min(int(settings.STRIPE_RATE_BURST), rate - 1))
    return float(rate - capacity), capacity


def stripe_token_await(*, seconds: float) -> None:
    """Take one token for a shopper's call (a capture), waiting up to ``seconds`` for it; else ``PaymentsBusy``.

    Admission follows the pace at which holds are placed, so captures come at most at that pace; but
    admitted shoppers press Buy together (one tick admits a second's worth), a burst above the bucket's
    size. They wait the few tens of milliseconds the bucket names for their turn instead of being told
    503: the wait is bounded, and only the purchase path (a request thread, never the event loop) does it.
    """
    deadline = time.monotonic() + seconds
    while True:
        try:
            stripe_tokens_take(count=1)
            return
        except PaymentsBusy as busy:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            time.sleep(min(busy.wait_ms / 1000, left))


def stripe_tokens_take(*, count: int = 1, background: bool = False) -> None:
    """Take ``count`` tokens for calls to Stripe at once, or raise ``PaymentsBusy`` with the wait.

    Background work (placing holds, cancellations, reads) leaves ``STRIPE_CAPTURE_RESERVE``
    tokens in the bucket, so shoppers' captures come first and are never starved by it.
    """
    refill, capacity = bucket_shape()
    floor = max(0, min(int(settings.STRIPE_CAPTURE_RESERVE), capacity - count)) if background else 0
    code, wait_ms = lua_script("stripe_bucket")(
        keys=[stripe_bucket_key()], args=[refill, capacity, min(count, capacity), floor], client=redis_client()
    )
    if BucketResult(code) is BucketResult.DENIED:
        raise PaymentsBusy(int(wait_ms))


def to_minor_units(amount: Decimal, currency: str) -> int:
    """Return an amount in the currency's smallest unit, as Stripe counts it."""
    if currency.lower() in ZERO_DECIMAL_CURRENCIES:
        return int(amount)
    return int((amount * 100).to_integral_value())


def from_minor_units(amount: int, currency: str) -> Decimal:
    if currency.lower() in ZERO_DECIMAL_CURRENCIES:
        return Decimal(amount)
    return (Decimal(amount) / 100).quantize(Decimal("0.01"))
