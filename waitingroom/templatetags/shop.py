"""How the shop's pages say prices, states and times (the same words as static/js/site.js uses)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from django import template
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html

register = template.Library()

CURRENCY_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "cad": "CA$", "aud": "A$", "chf": "CHF "}
ZERO_DECIMAL = {"jpy", "krw", "vnd", "clp"}  # currencies without minor units, as Stripe counts them

STATE_LABELS = {
    "scheduled": "Coming soon",
    "prequeue": "Waiting room open",
    "live": "On sale now",
    "paused": "Paused",
    "sold_out": "Sold out",
    "ended": "Ended",
}
ORDER_LABELS = {
    "pending": "Being paid",
    "paid": "Paid",
    "failed": "Not paid",
    "refunded": "Refunded",
}


@register.filter
def money(amount, currency: str = "") -> str:
    """``129.00, "usd"`` -> ``$129.00``; an unknown currency keeps its code (``129.00 SEK``)."""
    try:
        value = Decimal(str(amount))
    except (InvalidOperation, ValueError):
        return str(amount)
    code = (currency or "").lower()
    text = f"{value:,.{0 if code in ZERO_DECIMAL else 2}f}"
    symbol = CURRENCY_SYMBOLS.get(code)
    return f"{symbol}{text}" if symbol else f"{text} {code.upper()}".strip()


@register.filter
def state_label(state: str) -> str:
    return STATE_LABELS.get(state, state.replace("_", " ").capitalize())


@register.filter
def order_label(status: str) -> str:
    return ORDER_LABELS.get(status, status.capitalize())


def _as_datetime(value) -> datetime | None:
    if isinstance(value, datetime):
        return value
    return parse_datetime(value) if value else None


@register.simple_tag
def local_time(value, countdown: str = ""):
    """A ``<time>`` the page's script shows in the shopper's own time zone (UTC until it runs); with
    ``countdown`` ("starts", "ends"...) it also counts down to it, live."""
    moment = _as_datetime(value)
    if moment is None:
        return ""
    utc = moment.astimezone(UTC)
    return format_html(
        '<time datetime="{}" data-local{}>{}</time>',
        utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        format_html(' data-countdown="{}"', countdown) if countdown else "",
        utc.strftime("%d %b %Y, %H:%M UTC"),
    )
