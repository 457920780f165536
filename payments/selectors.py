"""Reads of payment state and the JSON shapes of the API contract."""

from __future__ import annotations

from django.conf import settings
from django.db.models import Count

from flashsale.formats import iso_utc
from inventory.models import Order

from .models import Authorization, AuthorizationStatus


def authorization_counts(*, drop_id: int) -> dict[str, int]:
    """Return the number of the drop's authorizations in each status (every status present)."""
    counts = dict(Authorization.objects.filter(drop_id=drop_id).values_list("status").annotate(n=Count("pk")))
    return {status.value: counts.get(status.value, 0) for status in AuthorizationStatus}


def stripe_calls_get(*, drop_id: int) -> dict[str, int]:
    """The Stripe calls a drop's cards cost, from their records: holds placed, captured, canceled or voided at
    Stripe (a card released before its hold was placed cost none)."""
    placed = Authorization.objects.filter(drop_id=drop_id, payment_intent_id__isnull=False)
    counts = {
        "cards": Authorization.objects.filter(drop_id=drop_id).count(),
        "holds_placed": placed.count(),
        "captures": placed.filter(status=AuthorizationStatus.CAPTURED).count(),
        "cancels": placed.filter(status=AuthorizationStatus.CANCELED).count(),
        "voids": placed.filter(status=AuthorizationStatus.FAILED, failure_code="card_limit").count(),
    }
    counts["total"] = counts["holds_placed"] + counts["captures"] + counts["cancels"] + counts["voids"]
    return counts


def authorization_latest_get(*, drop_id: int, shopper_id: int) -> Authorization | None:
    """Return the shopper's most recent authorization for the drop, whatever its status."""
    return Authorization.objects.filter(drop_id=drop_id, shopper_id=shopper_id).order_by("-attempt").first()


def authorization_public(authorization: Authorization, *, client_secret: str | None = None) -> dict:
    """Return the authorization as the API shows it to its shopper (the client secret only while 3-D Secure waits)."""
    known = authorization.card_brand or authorization.card_last4
    failed = authorization.status == AuthorizationStatus.FAILED
    return {
        "status": authorization.status,
        "amount": f"{authorization.amount:.2f}",
        "currency": authorization.currency,
        "card": {"brand": authorization.card_brand, "last4": authorization.card_last4} if known else None,
        "decline_code": authorization.failure_code or None if failed else None,
        "client_secret": client_secret if authorization.status == AuthorizationStatus.REQUIRES_ACTION else None,
    }


def authorizations_latest(*, drop_id: int) -> dict[int, Authorization]:
    """Each shopper's latest authorization for the drop (what the queue's view of holds is rebuilt from)."""
    latest: dict[int, Authorization] = {}
    for authorization in (
        Authorization.objects.filter(drop_id=drop_id)
        .order_by("shopper_id", "attempt")
        .only("shopper_id", "status", "failure_code", "updated_at", "attempt")
    ):
        latest[authorization.shopper_id] = authorization
    return latest


def order_public(order: Order) -> dict:
    """Return the order object of the API contract."""
    return {
        "id": order.pk,
        "drop": order.drop.slug,
        "status": order.status,
        "quantity": order.quantity,
        "amount": f"{order.amount:.2f}",
        "currency": order.currency,
        "created_at": iso_utc(order.created_at),
    }


def order_page_get(order: Order) -> dict:
    """The order as the shopper's pages show it: the API's order, the product, and the card it was paid with."""
    product = order.drop.product
    paid_with = (
        Authorization.objects.filter(
            drop_id=order.drop_id, shopper_id=order.shopper_id, status=AuthorizationStatus.CAPTURED
        )
        .exclude(card_last4="")
        .order_by("-attempt")
        .first()
    )
    return {
        **order_public(order),
        "title": product.title,
        "image_url": product.image_url or None,
        "card": f"{paid_with.card_brand.capitalize()} ending {paid_with.card_last4}" if paid_with else None,
    }


def stripe_js_config() -> dict[str, str]:
    """Return what a page needs to load Stripe.js: localstripe serves its own fake one at the API base."""
    if settings.STRIPE_LOCALSTRIPE:
        js_url = f"{settings.STRIPE_API_BASE.rstrip('/')}/js.stripe.com/v3/"
    else:
        js_url = "https://js.stripe.com/v3/"
    return {"publishable_key": settings.STRIPE_PUBLISHABLE_KEY, "js_url": js_url}
