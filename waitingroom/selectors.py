"""Reads of the waiting room and of drops as shoppers see them."""

from __future__ import annotations

import enum
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from flashsale.formats import iso_utc
from flashsale.redis import redis_client
from inventory.models import Drop, DropState
from inventory.redis_keys import inventory_keys
from inventory.selectors import drop_state_get, stock_get

from .errors import QueueUnavailable
from .redis_keys import queue_keys
from .scripts import HoldState, lua_script

DROP_CACHE_SECONDS = 1.0
# States whose lost Redis keys are not rebuilt (nothing is open: an ended drop, or one whose pre-queue has
# not opened), so a missing key there means "not queued", not "try again".
RECOVERED_NEVER = (DropState.ENDED, DropState.SCHEDULED)
DROP_CACHE_SIZE = 256  # drops kept per process (live drops are a handful)
NOT_QUEUED = -2  # entry.lua's answer for a shopper with no entry (-1 is a parked entry)
_drop_cache: dict[str, tuple[float, Drop | None]] = {}


class EntryStatus(enum.StrEnum):
    PREQUEUE = "prequeue"
    WAITING = "waiting"
    PAYMENT_REQUIRED = "payment_required"
    ADMITTED = "admitted"
    EXPIRED = "expired"
    PURCHASED = "purchased"
    SOLD_OUT = "sold_out"


@dataclass(frozen=True)
class Entry:
    status: EntryStatus
    ticket: int | None
    position: int | None
    serving: int
    length: int
    eta_seconds: int | None
    admission_expires_at: datetime | None
    decline_code: str | None = None  # with payment_required: why the card hold was not placed

    def as_dict(self) -> dict:
        return {
            "status": self.status.value,
            "ticket": self.ticket,
            "position": self.position,
            "serving": self.serving,
            "length": self.length,
            "eta_seconds": self.eta_seconds,
            "admission_expires_at": iso_utc(self.admission_expires_at),
            "decline_code": self.decline_code,
        }


@dataclass(frozen=True)
class QueueStats:
    length: int  # shoppers queued, pre-queue included
    serving: int  # highest ticket admitted
    admitted: int  # shoppers admitted whose checkout window is still open
    measured_rate: float = 0.0  # admissions per second over roughly the last five seconds


def drop_cached_get(*, slug: str) -> Drop | None:
    """Return the visible drop with this slug, read from the database at most once a second per process.

    The join and position paths use it so that the herd never reaches the database. Only drops that
    exist are kept, at most ``DROP_CACHE_SIZE`` of them (the oldest go first): made-up slugs neither fill
    memory nor answer from the cache.
    """
    now = time.monotonic()
    hit = _drop_cache.get(slug)
    if hit is not None and now - hit[0] < DROP_CACHE_SECONDS:
        return hit[1]
    drop = Drop.objects.select_related("product").filter(slug=slug, is_draft=False).first()
    if drop is None:
        _drop_cache.pop(slug, None)
        return None
    _drop_cache.pop(slug, None)  # re-inserted last: the dict's order is the order of reads
    _drop_cache[slug] = (now, drop)
    while len(_drop_cache) > DROP_CACHE_SIZE:
        _drop_cache.pop(next(iter(_drop_cache)))
    return drop


def drop_cache_clear() -> None:
    _drop_cache.clear()


def entry_build(
    *,
    drop: Drop,
    ticket: int,
    serving: int,
    length: int,
    expires_ms: int,
    outcome: str,
    rate: float,
    sold_out: bool,
    last_ticket: int = 0,
    hold: str = "",
    deferred: bool = False,
) -> Entry:
    """Derive the entry the API shows from the raw queue figures.

    A parked entry (ticket -1) looks like a waiting one at the very end of the line, forever.
    ``hold`` is the card hold's state (``HoldState``); ``deferred``: admission passed the ticket
    while its hold was not placed, and the shopper keeps their place until it is.
    """
    expires_at = datetime.fromtimestamp(expires_ms / 1000, tz=UTC) if expires_ms else None
    if ticket < 0:
        status = EntryStatus.SOLD_OUT if sold_out else EntryStatus.WAITING
        return Entry(status, None, max(1, last_ticket - serving + 1), serving, length, None, None)
    if ticket == 0:
        status = EntryStatus.SOLD_OUT if sold_out else EntryStatus.PREQUEUE
        return Entry(status, None, None, serving, length, None, None)
    if outcome == "purchased":
        return Entry(EntryStatus.PURCHASED, ticket, 0, serving, length, 0, None)
    if expires_at is not None and expires_ms > time.time() * 1000 and ticket <= serving:
        return Entry(EntryStatus.ADMITTED, ticket, 0, serving, length, 0, expires_at)
    if outcome in ("expired", "passed") or (ticket <= serving and not deferred):
        return Entry(EntryStatus.EXPIRED, ticket, 0, serving, length, None, None)
    position = max(1, ticket - serving)
    if sold_out:
        return Entry(EntryStatus.SOLD_OUT, ticket, position, serving, length, None, None)
    failure = HoldState.failure(hold)
    if failure is not None:
        return Entry(EntryStatus.PAYMENT_REQUIRED, ticket, position, serving, length, None, None, failure)
    per_second = rate if rate >= 1 else drop.admission_rate
    return Entry(EntryStatus.WAITING, ticket, position, serving, length, math.ceil(position / per_second), None)


def entry_call(*, drop: Drop, shopper_id: int) -> tuple[list[str], list]:
    """The keys and arguments of ``entry.lua`` for one shopper (sync and async callers share them)."""
    q, inv = queue_keys(drop.pk), inventory_keys(drop.pk)
    keys = [
        q.entries,
        q.serving,
        q.admitted,
        q.outcome,
        q.tick,
        q.last_ticket,
        inv.stock,
        inv.holds,
        q.holds,
        q.deferred,
    ]
    return keys, [shopper_id]


def _rebuilt_when_lost(drop: Drop) -> bool:
    """Whether the drop's keys, when missing, are being rebuilt (answer "try again"), not gone for good."""
    if drop.redis_released_at is not None and drop.closed():
        return False  # released on purpose, a while after it closed
    return drop.state_at(remaining=1) not in RECOVERED_NEVER


def entry_from_raw(*, drop: Drop, raw: list) -> Entry | None:
    """Interpret ``entry.lua``'s answer; None when the shopper is not in the queue."""
    ticket, serving, length, expires_ms, outcome, rate, last_ticket, stock, holds, hold, deferred = raw
    if stock == -1 and drop.armed_at is not None and _rebuilt_when_lost(drop):
        raise QueueUnavailable  # the drop's keys are gone: "not in the queue" would be a false final answer
    if ticket == NOT_QUEUED:
        return None
    outcome = outcome.decode() if isinstance(outcome, bytes) else outcome
    hold = hold.decode() if isinstance(hold, bytes) else hold
    sold_out = drop.state_at(remaining=1) is not DropState.ENDED and stock == 0 and holds == 0
    return entry_build(
        drop=drop,
        ticket=ticket,
        serving=serving,
        length=length,
        expires_ms=expires_ms,
        outcome=outcome,
        rate=rate / 1000,
        sold_out=sold_out,
        last_ticket=last_ticket,
        hold=hold,
        deferred=bool(deferred),
    )


def entry_get(*, drop: Drop, shopper_id: int) -> Entry | None:
    """Read one shopper's entry in one Redis call; None when they are not in the queue."""
    keys, args = entry_call(drop=drop, shopper_id=shopper_id)
    return entry_from_raw(drop=drop, raw=lua_script("entry")(keys=keys, args=args, client=redis_client()))


def drop_cached_peek(*, slug: str) -> tuple[bool, Drop | None]:
    """Return (fresh, drop) from this process's drop cache without touching the database."""
    hit = _drop_cache.get(slug)
    if hit is None or time.monotonic() - hit[0] >= DROP_CACHE_SECONDS:
        return False, None
    return True, hit[1]


def queue_stats_get(*, drop_id: int) -> QueueStats:
    """Read the queue's counters in one pipeline."""
    keys = queue_keys(drop_id)
    pipe = redis_client().pipeline(transaction=False)
    pipe.hlen(keys.entries)
    pipe.get(keys.serving)
    pipe.zcard(keys.admitted)
    pipe.hget(keys.tick, "rate")
    length, serving, admitted, rate = pipe.execute()
    return QueueStats(
        length=int(length), serving=int(serving or 0), admitted=int(admitted), measured_rate=float(rate or 0)
    )


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


def drop_frame_get(*, drop: Drop) -> dict:
    """Return the websocket's drop frame from Redis alone (one pipeline, no database)."""
    q, inv = queue_keys(drop.pk), inventory_keys(drop.pk)
    pipe = redis_client().pipeline(transaction=False)
    pipe.get(inv.stock)
    pipe.hlen(inv.holds)
    pipe.hlen(q.entries)
    pipe.get(q.serving)
    stock, holds, length, serving = pipe.execute()
    remaining = int(stock) if stock is not None else drop.quantity - drop.sold
    state = drop.state_at(remaining=remaining + (1 if holds else 0))
    return {
        "type": "drop",
        "state": state.value,
        "remaining": remaining,
        "serving": int(serving or 0),
        "length": int(length),
    }


@dataclass(frozen=True)
class BotStats:
    blocked: dict[str, int]  # refused joins by reason
    flagged: dict[str, int]  # parked entries by reason
    parked: dict[int, list[str]]  # shopper id -> reasons, for the entries still parked


def bot_stats_get(*, drop_id: int) -> BotStats:
    """Read the drop's refused and parked counts and its parked shoppers (one pipeline)."""
    q = queue_keys(drop_id)
    pipe = redis_client().pipeline(transaction=False)
    pipe.hgetall(q.blocked)
    pipe.hgetall(q.flagged)
    pipe.hgetall(q.parked)
    blocked, flagged, parked = pipe.execute()
    return BotStats(
        blocked={k.decode(): int(v) for k, v in blocked.items()},
        flagged={k.decode(): int(v) for k, v in flagged.items()},
        parked={int(k): v.decode().split(",") for k, v in parked.items()},
    )


@dataclass(frozen=True)
class HoldsDue:
    due: list[tuple[int, int]]  # (shopper, ticket) whose holds to place now, in order
    waiting: list[tuple[int, int]]  # (shopper, ticket) whose payment is required (the shopper must act)


def holds_due_get(*, drop: Drop, ahead: int, most: int, stale_ms: int, now_ms: int | None = None) -> HoldsDue:
    """The holds to place next: deferred shoppers first, then tickets up to ``ahead`` past serving (one call)."""
    q = queue_keys(drop.pk)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    raw = lua_script("due")(
        keys=[q.tickets, q.holds, q.deferred, q.serving, q.last_ticket],
        args=[ahead, now_ms, stale_ms, most],
        client=redis_client(),
    )
    split = next(i for i, value in enumerate(raw) if value in (b"|", "|"))
    pairs = [int(x) for x in raw[:split]], [int(x) for x in raw[split + 1 :]]
    return HoldsDue(
        due=list(zip(pairs[0][0::2], pairs[0][1::2], strict=True)),
        waiting=list(zip(pairs[1][0::2], pairs[1][1::2], strict=True)),
    )
