"""Writes to drops, their Redis stock and their orders.

Redis answers the herd (one Lua call per claim); the database is the final guard:
an order can only be reserved while ``sold + units <= quantity`` (a conditional
UPDATE) and one live order per shopper and drop is a unique constraint, so even a
Redis that lost its data cannot oversell.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone

from flashsale.redis import redis_client

from .errors import (
    InsufficientStock,
    InvalidDrop,
    InventoryUnavailable,
    LimitReached,
    QuantityBelowTaken,
    SoldOut,
)
from .models import Drop, Order, OrderStatus, Product
from .redis_keys import drop_tag, inventory_keys
from .scripts import (
    AdjustResult,
    ArmResult,
    ClaimResult,
    CommitResult,
    ReleaseResult,
    lua_script,
)

logger = logging.getLogger(__name__)

SWEEP_BATCH = 500


@dataclass(frozen=True)
class Claim:
    """Units held in Redis for one shopper until committed, released or expired."""

    id: str
    drop_id: int
    shopper_id: int
    quantity: int
    stock_after: int


@dataclass(frozen=True)
class RebuildResult:
    stock: int
    sold: int
    held: int


def _hold_ms() -> int:
    return int(settings.INVENTORY_HOLD_SECONDS * 1000)


# --- Drops -----------------------------------------------------------------------------------


def drop_validate(
    *,
    prequeue_opens_at: datetime,
    starts_at: datetime,
    ends_at: datetime | None,
    quantity: int,
    per_customer_limit: int,
    admission_rate: int,
    checkout_window: int,
    sold: int = 0,
) -> None:
    """Raise ``InvalidDrop`` or ``QuantityBelowTaken`` when the settings do not make a drop."""
    if prequeue_opens_at > starts_at:
        raise InvalidDrop("The pre-queue must open before the drop starts.")
    if ends_at is not None and ends_at <= starts_at:
        raise InvalidDrop("The drop must end after it starts.")
    if quantity < 1:
        raise InvalidDrop("The quantity must be at least 1.")
    if quantity < sold:
        raise QuantityBelowTaken(f"The quantity cannot go below the {sold} units already sold or held.")
    if per_customer_limit < 1 or admission_rate < 1 or checkout_window < 10:
        raise InvalidDrop("The limit and rate must be at least 1 and the checkout window at least 10 s.")


@transaction.atomic
def drop_schedule(
    *,
    slug: str,
    title: str,
    price: Decimal,
    quantity: int,
    starts_at: datetime,
    prequeue_opens_at: datetime | None = None,
    ends_at: datetime | None = None,
    description: str = "",
    image_url: str = "",
    currency: str = "usd",
    per_customer_limit: int = 1,
    admission_rate: int = 500,
    checkout_window: int = 300,
    is_draft: bool = False,
    max_accounts_per_card: int = 1,
) -> Drop:
    """Create or update a drop and its product, then arm its inventory."""
    prequeue_opens_at = prequeue_opens_at or starts_at
    product, _ = Product.objects.update_or_create(
        sku=slug,
        defaults={
            "title": title,
            "description": description,
            "image_url": image_url,
            "price": price,
            "currency": currency.lower(),
        },
    )
    drop = Drop.objects.select_for_update().filter(slug=slug).first()
    drop_validate(
        prequeue_opens_at=prequeue_opens_at,
        starts_at=starts_at,
        ends_at=ends_at,
        quantity=quantity,
        per_customer_limit=per_customer_limit,
        admission_rate=admission_rate,
        checkout_window=checkout_window,
        sold=drop.sold if drop else 0,
    )
    fields = {
        "product": product,
        "prequeue_opens_at": prequeue_opens_at,
        "starts_at": starts_at,
        "ends_at": ends_at,
        "per_customer_limit": per_customer_limit,
        "admission_rate": admission_rate,
        "checkout_window": checkout_window,
        "is_draft": is_draft,
        "max_accounts_per_card": max_accounts_per_card,
    }
    if drop is None:
        drop = Drop.objects.create(slug=slug, quantity=quantity, **fields)
    else:
        for name, value in fields.items():
            setattr(drop, name, value)
        drop.save(update_fields=[*fields])
        if drop.quantity != quantity:
            drop = drop_quantity_set(drop=drop, quantity=quantity)
    drop_arm(drop=drop)
    return drop


@transaction.atomic
def drop_quantity_set(*, drop: Drop, quantity: int) -> Drop:
    """Change a drop's quantity; an armed drop's Redis stock moves by the difference, atomically.

    Refuses to go below the units sold in the database or sold and held in Redis.
    """
    locked = Drop.objects.select_for_update().get(pk=drop.pk)
    if quantity < 1:
        raise InvalidDrop("The quantity must be at least 1.")
    if quantity < locked.sold:
        raise QuantityBelowTaken(f"The quantity cannot go below the {locked.sold} units already sold.")
    Drop.objects.filter(pk=locked.pk).update(quantity=quantity)
    keys = inventory_keys(locked.pk)
    client = redis_client()
    code, stock = lua_script("adjust")(keys=[keys.stock, keys.meta], args=[quantity], client=client)
    if AdjustResult(code) is AdjustResult.BELOW_TAKEN:
        raise QuantityBelowTaken(f"The quantity cannot go below the units sold or held right now ({stock} are free).")
    locked.refresh_from_db()
    return locked


def drop_arm(*, drop: Drop) -> ArmResult:
    """Load the drop's stock into Redis once; an armed counter is never reset.

    Keys left by another drop with the same id (a recreated database) are wiped first.
    """
    keys = inventory_keys(drop.pk)
    client = redis_client()
    for _ in range(2):
        result = ArmResult(
            lua_script("arm")(
                keys=[keys.stock, keys.sold, keys.meta],
                args=[drop.quantity, drop.sold, drop_epoch(drop)],
                client=client,
            )
        )
        if result is not ArmResult.FOREIGN:
            break
        logger.warning("drop %s: Redis held keys of an older drop with the same id; wiping them", drop.pk)
        stale = list(client.scan_iter(match=f"{drop_tag(drop.pk)}:*", count=1000))
        if stale:
            client.delete(*stale)
    if drop.armed_at is None:
        drop.armed_at = timezone.now()
        Drop.objects.filter(pk=drop.pk, armed_at__isnull=True).update(armed_at=drop.armed_at)
    return result


def drop_epoch(drop: Drop) -> str:
    """What tells this drop's Redis keys from an older drop's with the same id: its creation time."""
    return f"{drop.created_at.timestamp():.6f}"


def drop_pause(*, drop: Drop) -> None:
    Drop.objects.filter(pk=drop.pk).update(paused=True)
    drop.paused = True


def drop_resume(*, drop: Drop) -> None:
    Drop.objects.filter(pk=drop.pk).update(paused=False)
    drop.paused = False


def drop_end(*, drop: Drop) -> None:
    """End the drop now (an end already in the past is kept)."""
    now = timezone.now()
    if drop.ends_at is None or drop.ends_at > now:
        Drop.objects.filter(pk=drop.pk).update(ends_at=now)
        drop.ends_at = now


@transaction.atomic
def drop_retire(*, drop: Drop) -> Drop:
    """End the drop now and move it off its slug (to ``<slug>-<id>``), so a new drop can take the slug.

    Its orders, holds and Redis keys stay with it (they are keyed by id).
    """
    drop_end(drop=drop)
    retired = f"{drop.slug}-{drop.pk}"[:64]
    Drop.objects.filter(pk=drop.pk).update(slug=retired)
    drop.slug = retired
    return drop


def drop_redis_release(*, drop: Drop) -> int:
    """Delete every Redis key of a closed drop (all carry its hash tag); return how many were deleted.

    Recorded in the database first, so that nothing rebuilds the keys meanwhile (the recovery of lost
    keys skips released drops that are closed) and a run cut off in the middle is repeated.
    """
    if drop.redis_released_at is None:
        drop.redis_released_at = timezone.now()
        Drop.objects.filter(pk=drop.pk).update(redis_released_at=drop.redis_released_at)
    client, deleted, batch = redis_client(), 0, []
    for key in client.scan_iter(match=f"{drop_tag(drop.pk)}:*", count=1000):
        batch.append(key)
        if len(batch) == 1000:
            deleted += client.unlink(*batch)
            batch = []
    if batch:
        deleted += client.unlink(*batch)
    return deleted


# --- Units in Redis ----------------------------------------------------------------------------


def unit_claim(*, drop: Drop, shopper_id: int, quantity: int = 1) -> Claim:
    """Hold ``quantity`` units for the shopper in one atomic Redis call, or raise why not."""
    if quantity < 1 or quantity > drop.per_customer_limit:
        raise LimitReached(f"You may buy between 1 and {drop.per_customer_limit} units of this drop.")
    keys = inventory_keys(drop.pk)
    claim_id = secrets.token_hex(12)
    code, stock = lua_script("claim")(
        keys=[keys.stock, keys.holds, keys.expiry, keys.customers],
        args=[claim_id, shopper_id, quantity, drop.per_customer_limit, _hold_ms()],
        client=redis_client(),
    )
    result = ClaimResult(code)
    if result is ClaimResult.CLAIMED:
        return Claim(id=claim_id, drop_id=drop.pk, shopper_id=shopper_id, quantity=quantity, stock_after=stock)
    if result is ClaimResult.SOLD_OUT:
        raise SoldOut
    if result is ClaimResult.LIMIT_REACHED:
        raise LimitReached
    if result is ClaimResult.INSUFFICIENT:
        raise InsufficientStock(f"Only {stock} units are left.")
    if result is ClaimResult.NOT_ARMED:
        logger.warning("claim on drop %s found no stock key in Redis; sales pause until it is rebuilt", drop.pk)
        raise InventoryUnavailable
    raise RuntimeError(f"claim id collision on drop {drop.pk}")  # 96 random bits: never in practice


def unit_commit(*, claim: Claim) -> CommitResult:
    """Turn a held claim into a sold unit in Redis (idempotent)."""
    keys = inventory_keys(claim.drop_id)
    result = CommitResult(
        lua_script("commit")(
            keys=[keys.stock, keys.sold, keys.holds, keys.expiry, keys.customers, keys.committed],
            args=[claim.id, claim.shopper_id, claim.quantity],
            client=redis_client(),
        )
    )
    if result is CommitResult.LOST:
        # The database already counts this sale, so nothing is oversold; Redis is one unit
        # generous until the competing claim fails its database guard or reconcile runs.
        logger.warning("commit of claim %s on drop %s found its hold swept and no stock left", claim.id, claim.drop_id)
    return result


def unit_release(*, drop_id: int, claim_id: str) -> ReleaseResult:
    """Put a held claim back on sale (idempotent: an unknown or spent claim changes nothing)."""
    keys = inventory_keys(drop_id)
    return ReleaseResult(
        lua_script("release")(
            keys=[keys.stock, keys.holds, keys.expiry, keys.customers], args=[claim_id], client=redis_client()
        )
    )


def holds_sweep(*, drop_id: int, batch: int = SWEEP_BATCH) -> list[str]:
    """Return expired holds to stock in Redis; return their claim ids.

    A pending order of an expired hold is not failed here: whether its money was taken is for the
    checkout to find out (``purchases_settle``), which fails it or marks it paid. Until then the
    database's reservation keeps the unit, so it cannot be sold twice.
    """
    keys = inventory_keys(drop_id)
    released: list[str] = []
    while True:
        chunk = [
            c.decode() if isinstance(c, bytes) else c
            for c in lua_script("sweep")(
                keys=[keys.stock, keys.holds, keys.expiry, keys.customers], args=[batch], client=redis_client()
            )
        ]
        released.extend(chunk)
        if len(chunk) < batch:
            break
    if released:
        logger.info("swept %s expired holds on drop %s", len(released), drop_id)
    return released


# --- Orders: the database guard ----------------------------------------------------------------


def order_reserve(*, claim: Claim, shopper, idempotency_key: str = "") -> Order:
    """Write a pending order for a claim, guarded by the database.

    The conditional UPDATE takes the units only while ``sold + units <= quantity``;
    the unique constraint allows one live order per shopper and drop. On refusal the
    Redis hold is released and the domain error raised.
    """
    try:
        with transaction.atomic():
            drop = Drop.objects.select_related("product").get(pk=claim.drop_id)
            if claim.quantity > drop.per_customer_limit:
                raise LimitReached
            taken = Drop.objects.filter(pk=drop.pk, sold__lte=F("quantity") - claim.quantity).update(
                sold=F("sold") + claim.quantity
            )
            if not taken:
                raise SoldOut
            return Order.objects.create(
                drop=drop,
                shopper=shopper,
                quantity=claim.quantity,
                claim_id=claim.id,
                amount=drop.product.price * claim.quantity,
                currency=drop.product.currency,
                idempotency_key=idempotency_key,
            )
    except IntegrityError:
        unit_release(drop_id=claim.drop_id, claim_id=claim.id)
        raise LimitReached from None
    except (SoldOut, LimitReached):
        unit_release(drop_id=claim.drop_id, claim_id=claim.id)
        raise


def order_mark_paid(*, order: Order) -> bool:
    """Mark a pending order paid and commit its units in Redis; False when it was no longer pending."""
    with transaction.atomic():
        # The drop row's lock orders this against inventory_rebuild, which reads orders and rewrites
        # Redis under the same lock: a rebuild sees this order either pending (and holds it) or paid.
        _drop_lock(order.drop_id)
        updated = Order.objects.filter(pk=order.pk, status=OrderStatus.PENDING).update(
            status=OrderStatus.PAID, updated_at=timezone.now()
        )
    if not updated:
        order.refresh_from_db()
        return order.status == OrderStatus.PAID
    order.status = OrderStatus.PAID
    unit_commit(claim=order_claim(order))
    return True


def order_mark_failed(*, order: Order, failure_code: str) -> bool:
    """Fail a pending order and put its units back on sale at once; False when it was not pending."""
    changed = _order_unreserve(order=order, failure_code=failure_code)
    unit_release(drop_id=order.drop_id, claim_id=order.claim_id)
    return changed


def _order_unreserve(*, order: Order, failure_code: str) -> bool:
    with transaction.atomic():
        _drop_lock(order.drop_id)
        updated = Order.objects.filter(pk=order.pk, status=OrderStatus.PENDING).update(
            status=OrderStatus.FAILED, failure_code=failure_code, updated_at=timezone.now()
        )
        if updated:
            Drop.objects.filter(pk=order.drop_id).update(sold=F("sold") - order.quantity)
    if updated:
        order.status = OrderStatus.FAILED
        order.failure_code = failure_code
    return bool(updated)


def order_mark_refunded(*, order: Order) -> bool:
    """Mark a paid order refunded; its units stay counted as sold until they are put back on sale
    (``drop_quantity_set``). False when the order was not paid."""
    updated = Order.objects.filter(pk=order.pk, status=OrderStatus.PAID).update(
        status=OrderStatus.REFUNDED, updated_at=timezone.now()
    )
    if updated:
        order.status = OrderStatus.REFUNDED
    return bool(updated)


def _drop_lock(drop_id: int) -> None:
    """Lock the drop's row until the transaction ends (SQLite's IMMEDIATE transactions lock it all)."""
    Drop.objects.select_for_update().filter(pk=drop_id).values_list("pk", flat=True).first()


def order_claim(order: Order) -> Claim:
    """Return the Redis claim an order was reserved with."""
    return Claim(
        id=order.claim_id, drop_id=order.drop_id, shopper_id=order.shopper_id, quantity=order.quantity, stock_after=-1
    )


# --- Repair ------------------------------------------------------------------------------------


def inventory_rebuild(*, drop: Drop) -> RebuildResult:
    """Replace the drop's Redis inventory with the database's truth.

    Paid orders become committed units, pending orders become fresh holds, and the
    stock is ``quantity - sold`` as the database counts it.
    """
    with transaction.atomic():
        # Hold the drop row while reading orders and rewriting Redis, so that no reservation,
        # payment or failure lands between the two (each of them locks this row first).
        drop = Drop.objects.select_for_update().get(pk=drop.pk)
        live = Order.objects.filter(drop_id=drop.pk, status__in=[OrderStatus.PENDING, OrderStatus.PAID])
        paid = list(live.filter(status=OrderStatus.PAID).values_list("claim_id", flat=True))
        pending = list(live.filter(status=OrderStatus.PENDING).values_list("claim_id", "shopper_id", "quantity"))
        per_shopper = list(live.values("shopper_id").annotate(units=Sum("quantity")).values_list("shopper_id", "units"))
        args: list[object] = [drop.quantity, drop.sold, _hold_ms(), drop_epoch(drop), len(paid), len(pending), *paid]
        for triple in pending:
            args.extend(triple)
        for pair in per_shopper:
            args.extend(pair)
        keys = inventory_keys(drop.pk)
        stock, sold, held = lua_script("rebuild")(keys=keys.as_list(), args=args, client=redis_client())
    logger.info("rebuilt drop %s inventory from the database: stock=%s sold=%s held=%s", drop.pk, stock, sold, held)
    return RebuildResult(stock=stock, sold=sold, held=held)


def drop_expire_holds_due(*, now: datetime | None = None) -> dict[int, int]:
    """Sweep every drop that may still hold units; return released holds per drop."""
    now = now or timezone.now()
    recent = now - timedelta(days=1)
    drop_ids = Drop.objects.filter(armed_at__isnull=False).exclude(ends_at__lt=recent).values_list("pk", flat=True)
    return {drop_id: len(holds_sweep(drop_id=drop_id)) for drop_id in drop_ids}


def merchandiser_ensure(*, username: str, password: str) -> bool:
    """Create a staff account in the Merchandisers group unless it exists; True when created."""
    User = get_user_model()
    if User.objects.filter(username=username).exists():
        return False
    user = User.objects.create_user(username=username, password=password, is_staff=True)
    user.groups.add(Group.objects.get(name="Merchandisers"))
    return True
