"""Reads of drops, stock and orders."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Max, QuerySet, Sum
from django.utils import timezone

from flashsale.redis import redis_client

from .models import Drop, DropState, Order, OrderStatus
from .redis_keys import inventory_keys


@dataclass(frozen=True)
class StockSnapshot:
    redis: int | None  # units free to claim in Redis; None when the drop has no stock key
    redis_sold: int
    held: int  # units held in Redis for shoppers who have not finished
    held_claims: int
    database: int  # quantity - sold as the database counts it (pending orders included in sold)
    sold: int  # units in paid orders
    pending: int  # units in pending orders

    @property
    def remaining(self) -> int:
        """Units not yet sold or held: the figure shoppers see."""
        return self.redis if self.redis is not None else self.database

    def as_dict(self) -> dict:
        return asdict(self)


def stock_get(*, drop: Drop) -> StockSnapshot:
    """Read the drop's stock from Redis (one pipeline) and from the database."""
    keys = inventory_keys(drop.pk)
    pipe = redis_client().pipeline(transaction=False)
    pipe.get(keys.stock)
    pipe.get(keys.sold)
    pipe.hvals(keys.holds)
    stock, sold, holds = pipe.execute()
    held = sum(int(value.rsplit(b":", 1)[1]) for value in holds)
    units = dict(
        Order.objects.filter(drop_id=drop.pk, status__in=[OrderStatus.PAID, OrderStatus.PENDING])
        .values_list("status")
        .annotate(units=Sum("quantity"))
        .values_list("status", "units")
    )
    db_drop = Drop.objects.only("quantity", "sold").get(pk=drop.pk)
    return StockSnapshot(
        redis=None if stock is None else int(stock),
        redis_sold=int(sold or 0),
        held=held,
        held_claims=len(holds),
        database=db_drop.quantity - db_drop.sold,
        sold=units.get(OrderStatus.PAID, 0),
        pending=units.get(OrderStatus.PENDING, 0),
    )


def drop_state_get(*, drop: Drop, stock: StockSnapshot | None = None) -> DropState:
    """Return the drop's state now, counting Redis's live stock when it is armed."""
    stock = stock or stock_get(drop=drop)
    unsold = drop.quantity - stock.sold if stock.redis is None else stock.redis + stock.held
    return drop.state_at(remaining=min(unsold, drop.quantity - stock.sold))


def orders_pending_before(*, cutoff: datetime, limit: int = 500) -> list[Order]:
    """Pending orders made before ``cutoff``: purchases that stopped between reserving and being paid."""
    return list(
        Order.objects.select_related("drop__product")
        .filter(status=OrderStatus.PENDING, created_at__lt=cutoff)
        .order_by("created_at")[:limit]
    )


def drop_state_quick(*, drop: Drop) -> DropState:
    """The drop's state from Redis alone (one pipeline, no database): for hot paths such as the card step.

    A unit held at checkout may still come back, so a drop with holds is not sold out yet. An unarmed
    drop falls back to its database figure.
    """
    keys = inventory_keys(drop.pk)
    pipe = redis_client().pipeline(transaction=False)
    pipe.get(keys.stock)
    pipe.hlen(keys.holds)
    stock, holds = pipe.execute()
    if stock is None:
        return drop.state_at()
    return drop.state_at(remaining=int(stock) + (1 if holds else 0))


def drop_get(*, slug: str) -> Drop | None:
    return Drop.objects.select_related("product").filter(slug=slug, is_draft=False).first()


def drop_list_visible() -> QuerySet[Drop]:
    """Every drop that is not a draft and did not end more than a day ago, soonest first."""
    cutoff = timezone.now() - timedelta(days=1)
    return (
        Drop.objects.select_related("product")
        .filter(is_draft=False)
        .exclude(ends_at__lt=cutoff)
        .order_by("starts_at", "pk")
    )


def orders_by_status(*, drop: Drop) -> dict[str, int]:
    counts = dict(Order.objects.filter(drop_id=drop.pk).values_list("status").annotate(n=Count("pk")))
    return {status: counts.get(status, 0) for status in (OrderStatus.PAID, OrderStatus.FAILED, OrderStatus.REFUNDED)}


def orders_for_shopper(*, shopper_id: int) -> QuerySet[Order]:
    return (
        Order.objects.filter(shopper_id=shopper_id)
        .exclude(status=OrderStatus.PENDING)
        .select_related("drop__product")
        .order_by("-created_at", "-pk")
    )


def order_for_shopper(*, shopper_id: int, order_id: int) -> Order | None:
    """One of the shopper's orders (never another shopper's)."""
    return orders_for_shopper(shopper_id=shopper_id).filter(pk=order_id).first()


def order_paid_get(*, drop_id: int, shopper_id: int) -> Order | None:
    """The shopper's paid order for the drop, if they bought it."""
    return orders_for_shopper(shopper_id=shopper_id).filter(drop_id=drop_id, status=OrderStatus.PAID).first()


def drop_get_any(*, slug: str) -> Drop | None:
    """Return the drop with this slug, drafts included (for merchandisers and commands)."""
    return Drop.objects.select_related("product").filter(slug=slug).first()


def stock_agrees(stock: StockSnapshot) -> bool:
    """Tell whether Redis's free and held units equal the database's unsold and pending units."""
    return stock.redis == stock.database and stock.held == stock.pending


def buyers_get(*, drop: Drop) -> set[int]:
    """Shoppers with a pending or paid order for the drop."""
    return set(
        Order.objects.filter(drop_id=drop.pk, status__in=[OrderStatus.PENDING, OrderStatus.PAID]).values_list(
            "shopper_id", flat=True
        )
    )


def drops_redis_releasable(*, cutoff: datetime) -> list[Drop]:
    """Armed drops whose Redis keys may go: closed since before ``cutoff`` (ended then, or sold out with its
    last order settled then) and with no order still pending. Drops already released are not listed."""
    drops, now = [], timezone.now()
    for drop in Drop.objects.filter(armed_at__isnull=False, redis_released_at__isnull=True):
        if not drop.closed(now) or drop.orders.filter(status=OrderStatus.PENDING).exists():
            continue
        if drop.ends_at is not None and drop.ends_at <= now:
            closed_at = drop.ends_at
        else:
            closed_at = drop.orders.aggregate(last=Max("updated_at"))["last"]
        if closed_at is not None and closed_at <= cutoff:
            drops.append(drop)
    return drops


def drops_redis_released_since(*, since: datetime) -> list[Drop]:
    """Drops whose Redis keys were released after ``since`` (their deletion is repeated should keys be back)."""
    return list(Drop.objects.filter(redis_released_at__gte=since))
