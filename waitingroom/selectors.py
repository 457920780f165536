"""Reads of the waiting room and of drops as shoppers see them."""

from __future__ import annotations

from dataclasses import dataclass

from flashsale.formats import iso_utc
from flashsale.redis import redis_client
from inventory.models import Drop
from inventory.selectors import drop_state_get, orders_by_status, stock_get
from payments.selectors import authorization_counts

from .redis_keys import queue_keys


@dataclass(frozen=True)
class QueueStats:
    length: int  # shoppers queued, pre-queue included
    serving: int  # highest ticket admitted
    admitted: int  # shoppers admitted whose checkout window is still open


def queue_stats_get(*, drop_id: int) -> QueueStats:
    """Read the queue's counters in one pipeline."""
    keys = queue_keys(drop_id)
    pipe = redis_client().pipeline(transaction=False)
    pipe.hlen(keys.entries)
    pipe.get(keys.serving)
    pipe.zcard(keys.admitted)
    length, serving, admitted = pipe.execute()
    return QueueStats(length=int(length), serving=int(serving or 0), admitted=int(admitted))


def drop_public_get(*, drop: Drop) -> dict:
    """Return the drop object of the API contract."""
    stock = stock_get(drop=drop)
    queue = queue_stats_get(drop_id=drop.pk)
    product = drop.product
    return {
        "slug": drop.slug,
        "title": product.title,
        "description": product.description,
        "image_url": product.image_url or None,
        "price": f"{product.price:.2f}",
        "currency": product.currency,
        "quantity": drop.quantity,
        "remaining": stock.remaining,
        "state": drop_state_get(drop=drop, stock=stock).value,
        "prequeue_opens_at": iso_utc(drop.prequeue_opens_at),
        "starts_at": iso_utc(drop.starts_at),
        "ends_at": iso_utc(drop.ends_at),
        "per_customer_limit": drop.per_customer_limit,
        "admission_rate": drop.admission_rate,
        "checkout_window": drop.checkout_window,
        "queue": {"length": queue.length, "serving": queue.serving},
    }


def drop_status_get(*, drop: Drop) -> dict:
    """Return the operator's view of a drop (what ``drop_status --json`` prints)."""
    stock = stock_get(drop=drop)
    queue = queue_stats_get(drop_id=drop.pk)
    return {
        "slug": drop.slug,
        "state": drop_state_get(drop=drop, stock=stock).value,
        "quantity": drop.quantity,
        "stock": {
            "redis": stock.redis,
            "database": stock.database,
            "sold": stock.sold,
            "held": stock.held,
            "pending": stock.pending,
            "redis_sold": stock.redis_sold,
        },
        "queue": {"length": queue.length, "serving": queue.serving, "admitted": queue.admitted},
        "orders": orders_by_status(drop=drop),
        "authorizations": authorization_counts(drop_id=drop.pk),
    }
