"""Reads that span the apps: the operator's view of a drop (``drop_status``) and the live dashboard's figures."""

from __future__ import annotations

from flashsale.formats import iso_utc
from inventory.models import Drop
from inventory.selectors import drop_state_get, orders_by_status, stock_get
from payments.selectors import authorization_counts
from waitingroom.dashboard import recent_rate, series_get
from waitingroom.selectors import bot_stats_get, queue_stats_get


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


def dashboard_figures(*, drop: Drop) -> dict:
    """Everything the live dashboard shows; ``status`` is exactly what ``drop_status --json`` prints."""
    status = drop_status_get(drop=drop)
    queue = queue_stats_get(drop_id=drop.pk)
    bots = bot_stats_get(drop_id=drop.pk)
    samples = series_get(drop_id=drop.pk)
    sold = status["stock"]["sold"]
    return {
        "status": status,
        "starts_at": iso_utc(drop.starts_at),
        "ends_at": iso_utc(drop.ends_at),
        "admission_rate": {"set": drop.admission_rate, "measured": round(queue.measured_rate, 1)},
        "purchases_per_second": round(recent_rate(samples, "sold"), 2),
        "conversion": round(sold / queue.serving, 4) if queue.serving else None,
        "bots": {"blocked": bots.blocked, "flagged": bots.flagged, "parked": len(bots.parked)},
    }
