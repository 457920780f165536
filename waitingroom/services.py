"""Writes of the waiting room: tickets, the pre-queue draw, admission ticks, admissions, shoppers.

Joining is one Lua call and touches no database; the admission tick is one Lua call per
drop per second, atomic, so any number of tickers admit each shopper exactly once.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from flashsale.logs import log_context
from flashsale.redis import redis_client
from inventory.models import Drop, DropState
from inventory.redis_keys import inventory_keys

from . import bots, dashboard, pow, realtime, recaptcha, selectors
from .errors import (
    AdmissionExpired,
    AuthorizationRequired,
    BotSuspected,
    DropNotOpen,
    InvalidShopper,
    NotAdmitted,
    PowReplayed,
    QueueSoldOut,
    QueueUnavailable,
    UsernameTaken,
)
from .redis_keys import queue_keys
from .scripts import FinishResult, HoldState, JoinResult, ReleaseResult, StartResult, lua_script
from .selectors import Entry, EntryStatus

logger = logging.getLogger(__name__)

BULK_BATCH = 5_000
HOLDS_RESTORE_CHUNK = 5_000
ADMIT_MAX_PER_TICK = 10_000
ENDED_TICK_SECONDS = 60
JOINABLE = {DropState.PREQUEUE, DropState.LIVE, DropState.PAUSED}


@dataclass(frozen=True)
class TickResult:
    drop_id: int
    serving_before: int
    serving: int
    active: int
    measured_rate: float
    admitted: list[int]
    expired: list[int]  # admissions that expired and deferred shoppers who passed their turn
    tickets: list[int] = ()  # the admitted shoppers' tickets, in the same order


@dataclass(frozen=True)
class JoinPlan:
    """One join, checked and ready for ``join.lua``; ``refused`` when it must not reach the queue."""

    keys: list[str]
    args: list
    refused: BotSuspected | None = None


def join_call(
    *,
    drop: Drop,
    shopper_id: int,
    device: str = "",
    require_authorization: bool = True,
    pow_marker: str | None = None,
    pow_ttl: int = 600,
    park_reasons: list[str] | None = None,
) -> JoinPlan:
    """The keys and arguments of ``join.lua`` (see its header) for one shopper."""
    if drop.state_at(remaining=1) not in JOINABLE:
        raise DropNotOpen
    q, inv = queue_keys(drop.pk), inventory_keys(drop.pk)
    keys = [
        q.entries, q.tickets, q.prequeue, q.started, q.last_ticket, q.serving, q.holds, inv.stock,
        inv.holds, f"{q.pow_spent}{pow_marker or ''}", f"{q.device}{device}",
        q.parked, q.blocked, q.flagged, q.journal,
    ]  # fmt: skip
    args = [
        shopper_id, 1 if require_authorization else 0, pow_ttl, drop.max_accounts_per_device,
        1 if park_reasons else 0, ",".join(park_reasons or []), 1 if drop.armed_at else 0,
    ]  # fmt: skip
    return JoinPlan(keys=keys, args=args)


def join_result(*, drop: Drop, raw: list) -> tuple[Entry | None, bool]:
    """Interpret ``join.lua``'s answer: the new entry and True, (None, False) for an existing entry
    (the caller reads it whole), or the domain error."""
    code, ticket, serving, length = raw
    result = JoinResult(code)
    if result is JoinResult.UNAVAILABLE:
        raise QueueUnavailable
    if result is JoinResult.AUTHORIZATION_REQUIRED:
        raise AuthorizationRequired
    if result is JoinResult.SOLD_OUT:
        raise QueueSoldOut
    if result is JoinResult.POW_REPLAYED:
        raise PowReplayed
    if result is JoinResult.DEVICE_LIMIT:
        raise BotSuspected("Too many accounts have queued from this device.", reasons=["device_limit"])
    if result is JoinResult.EXISTING:
        return None, False
    entry = selectors.entry_build(
        drop=drop, ticket=ticket, serving=serving, length=length, expires_ms=0, outcome="", rate=0.0,
        sold_out=False, last_ticket=length,
    )  # fmt: skip
    return entry, True


def ticket_issue(*, drop: Drop, shopper_id: int, **options) -> tuple[Entry, bool]:
    """Queue the shopper (pre-queue before the start, a ticket after) in one Redis call.

    Returns the entry and whether it was created now. Options as ``join_call``: ``pow_marker``
    is the proof-of-work's signature, spent in the same call so a replay is refused atomically;
    ``device`` is the hashed device fingerprint (at most ``drop.max_accounts_per_device``
    shoppers queue from one); with ``park_reasons`` the entry goes to the queue that is never
    admitted.
    """
    plan = join_call(drop=drop, shopper_id=shopper_id, **options)
    entry, created = join_result(
        drop=drop, raw=lua_script("join")(keys=plan.keys, args=plan.args, client=redis_client())
    )
    if entry is None:
        entry = selectors.entry_get(drop=drop, shopper_id=shopper_id)
    return entry, created


def join_plan(
    *,
    drop: Drop,
    shopper_id: int,
    pow_payload: str,
    fingerprint: str,
    signals: dict,
    user_agent: str,
    account_age: float | None,
) -> JoinPlan:
    """Check a join's account age, proof-of-work and bot signals (CPU only, no I/O) and plan it.

    The plan is refused (with its reasons, to be counted) or carries the one Redis call that
    queues or parks the shopper.
    """
    if drop.min_account_age and (account_age is None or account_age < drop.min_account_age):
        refusal = BotSuspected("This account is too new to join this drop.", reasons=["account_too_new"])
        return JoinPlan(keys=[], args=[], refused=refusal)
    proof = pow.pow_verify(payload=pow_payload, drop_id=drop.pk, shopper_id=shopper_id)
    verdict = bots.suspicion_score(user_agent=user_agent, signals=signals, account_age=account_age)
    park = None
    if verdict.score >= drop.bot_threshold:
        if drop.bot_action != "park":
            return JoinPlan(keys=[], args=[], refused=BotSuspected(reasons=verdict.reasons))
        park = verdict.reasons
    return join_call(
        drop=drop,
        shopper_id=shopper_id,
        device=hashlib.sha256(fingerprint.encode()).hexdigest()[:32],
        pow_marker=proof.signature,
        pow_ttl=proof.expires_in,
        park_reasons=park,
    )


def queue_join(
    *,
    drop: Drop,
    shopper_id: int,
    pow_payload: str,
    fingerprint: str,
    signals: dict,
    user_agent: str,
    account_age: float | None,
    remote_ip: str,
    recaptcha_token: str | None = None,
) -> tuple[Entry, bool]:
    """Check a join's bot signals, proof-of-work and reCAPTCHA, then queue it (or park or refuse it).

    Only the final join call and, for a refused join, one counter touch Redis.
    """
    plan = join_plan(
        drop=drop, shopper_id=shopper_id, pow_payload=pow_payload, fingerprint=fingerprint, signals=signals,
        user_agent=user_agent, account_age=account_age,
    )  # fmt: skip
    if plan.refused is None and recaptcha.recaptcha_enabled():
        try:
            recaptcha.recaptcha_check(token=recaptcha_token or "", remote_ip=remote_ip, action="join")
        except BotSuspected as exc:
            plan = JoinPlan(keys=[], args=[], refused=exc)
    if plan.refused is not None:
        bots_count_blocked(drop=drop, reasons=plan.refused.reasons)
        raise plan.refused
    entry, created = join_result(
        drop=drop, raw=lua_script("join")(keys=plan.keys, args=plan.args, client=redis_client())
    )
    if entry is None:
        entry = selectors.entry_get(drop=drop, shopper_id=shopper_id)
    return entry, created


def bots_count_blocked(*, drop: Drop, reasons: list[str]) -> None:
    """Count a refused join under each of its reasons (what merchandisers see in admin)."""
    if reasons:
        pipe = redis_client().pipeline(transaction=False)
        for reason in reasons:
            pipe.hincrby(queue_keys(drop.pk).blocked, reason, 1)
        pipe.execute()


def parked_release(*, drop: Drop, shopper_id: int) -> ReleaseResult:
    """Let a parked shopper into the real queue, at its end (a merchandiser's decision)."""
    q = queue_keys(drop.pk)
    code, _ticket = lua_script("release")(
        keys=[q.entries, q.parked, q.started, q.last_ticket, q.tickets, q.prequeue, q.journal],
        args=[shopper_id],
        client=redis_client(),
    )
    result = ReleaseResult(code)
    if result is ReleaseResult.RELEASED:
        logger.info("released parked shopper %s on drop %s", shopper_id, drop.pk)
        realtime.entry_publish(drop=drop, shopper_id=shopper_id)
    return result


def queue_start(*, drop: Drop) -> StartResult:
    """Draw the pre-queue's order with a cryptographically secure shuffle and give tickets 1..M at once."""
    q = queue_keys(drop.pk)
    client = redis_client()
    for _ in range(10):
        if client.exists(q.started):
            return StartResult.ALREADY_STARTED
        waiting = client.lrange(q.prequeue, 0, -1)
        secrets.SystemRandom().shuffle(waiting)
        code, count = lua_script("start")(
            keys=[q.entries, q.tickets, q.prequeue, q.started, q.last_ticket, q.journal],
            args=waiting,
            client=client,
        )
        result = StartResult(code)
        if result is not StartResult.CHANGED:
            if result is StartResult.STARTED:
                logger.info("drop %s started: %s pre-queued shoppers drew tickets 1..%s", drop.pk, count, count)
            return result
    raise RuntimeError(f"the pre-queue of drop {drop.pk} kept changing during the draw")


def queue_admit_batch(*, drop: Drop, now_ms: int | None = None, publish: bool = True) -> TickResult:
    """Run one admission tick: admit at the drop's rate those whose card hold is placed, expire finished
    windows, tell the shoppers. The caller releases the holds of the shoppers in ``expired``."""
    state = drop.state_at(remaining=1)
    if state in (DropState.LIVE, DropState.PAUSED):
        queue_start(drop=drop)
    rate = drop.admission_rate if state is DropState.LIVE else 0
    q, inv = queue_keys(drop.pk), inventory_keys(drop.pk)
    raw = lua_script("tick")(
        keys=[q.tick, q.serving, q.last_ticket, q.tickets, q.admitted, q.outcome, inv.stock, q.holds, q.deferred],
        args=[
            rate,
            drop.checkout_window * 1000,
            drop.admitted_cap_multiple,
            "" if now_ms is None else now_ms,
            ADMIT_MAX_PER_TICK,
        ],
        client=redis_client(),
    )
    rest = raw[4:]
    split = rest.index(b"|") if b"|" in rest else rest.index("|")
    pairs = rest[split + 1 :]
    result = TickResult(
        drop_id=drop.pk,
        serving_before=raw[0],
        serving=raw[1],
        active=raw[2],
        measured_rate=raw[3] / 1000,
        expired=[int(x) for x in rest[:split]],
        admitted=[int(x) for x in pairs[0::2]],
        tickets=[int(x) for x in pairs[1::2]],
    )
    if publish:
        dashboard.sample_record(drop=drop, admitted=result.active)
        realtime.tick_publish(drop=drop, tick=result)
    return result


def admissions_announce(*, drop: Drop) -> int:
    """Tell the admitted shoppers their entry again (after a rebuild restored admissions no tick announced)."""
    return realtime.admissions_announce(drop=drop)


def queue_tick_all(*, now_ms: int | None = None) -> dict[str, TickResult]:
    """Tick every drop that is live or paused; return each drop's tick by slug.

    A drop that ended in the last minute is ticked too (admitting nobody), so that the shoppers
    still watching get its "ended" state and their admissions expire.
    """
    now = timezone.now()
    ticked = {}
    recently = now - timedelta(seconds=ENDED_TICK_SECONDS)
    for drop in Drop.objects.filter(starts_at__lte=now, is_draft=False).exclude(ends_at__lte=recently):
        with log_context(drop=drop.slug):
            ticked[drop.slug] = queue_admit_batch(drop=drop, now_ms=now_ms)
    return ticked


# --- Card holds, as the queue sees them ------------------------------------------------------------


def hold_card_given(*, drop_id: int, shopper_id: int) -> None:
    """The shopper gave a card (again): its hold is to be placed when their turn comes near."""
    redis_client().hset(queue_keys(drop_id).holds, shopper_id, HoldState.SCHEDULED)


def hold_states_set(*, drop: Drop, states: dict[int, str]) -> None:
    """Record hold states (``HoldState``) for shoppers, as the hold scheduler learns them; a shopper whose
    payment is now required is told at once (websocket), the others learn it from the next tick."""
    if not states:
        return
    redis_client().hset(queue_keys(drop.pk).holds, mapping=states)
    for shopper_id, state in states.items():
        if HoldState.failure(state) is not None:
            realtime.entry_publish(drop=drop, shopper_id=shopper_id)


def hold_state_repair(*, drop_id: int, shopper_id: int, state: str) -> None:
    """Write a shopper's hold state only where the queue lost it (never over a newer one)."""
    redis_client().hsetnx(queue_keys(drop_id).holds, shopper_id, state)


def hold_card_released(*, drop_id: int, shopper_ids: list[int]) -> None:
    """The shoppers have no card for the drop any more (released): they cannot be admitted."""
    if shopper_ids:
        redis_client().hdel(queue_keys(drop_id).holds, *shopper_ids)


def holds_restore(*, drop_id: int, states: dict[int, str]) -> None:
    """Write the holds' states back after Redis lost them (from the database's authorizations).

    A state already there was written since Redis came back (a card given during the rebuild) and is
    newer than the database's: it is kept.
    """
    key = queue_keys(drop_id).holds
    items = list(states.items())
    for start in range(0, len(items), HOLDS_RESTORE_CHUNK):
        pipe = redis_client().pipeline(transaction=False)
        for shopper_id, state in items[start : start + HOLDS_RESTORE_CHUNK]:
            pipe.hsetnx(key, shopper_id, state)
        pipe.execute()


def admission_check(*, drop: Drop, shopper_id: int) -> Entry:
    """Return the shopper's entry if they may buy now; raise NotAdmitted or AdmissionExpired."""
    entry = selectors.entry_get(drop=drop, shopper_id=shopper_id)
    if entry is None or entry.status in (EntryStatus.PREQUEUE, EntryStatus.WAITING, EntryStatus.SOLD_OUT):
        raise NotAdmitted
    if entry.status is EntryStatus.EXPIRED:
        raise AdmissionExpired
    return entry


def admission_complete(*, drop: Drop, shopper_id: int) -> FinishResult:
    """Mark the admitted shopper as having bought: they stop counting against the cap; tell everyone."""
    q = queue_keys(drop.pk)
    result = FinishResult(
        lua_script("finish")(keys=[q.admitted, q.outcome], args=[shopper_id, "purchased"], client=redis_client())
    )
    realtime.entry_publish(drop=drop, shopper_id=shopper_id)
    realtime.drop_publish(drop=drop)
    return result


def shopper_register(*, username: str, email: str, password: str):
    """Create a shopper account after Django's username and password validation; raise why not."""
    User = get_user_model()
    if not username or len(username) > 150:
        raise InvalidShopper("The username must have 1 to 150 characters.")
    try:
        validate_email(email)
    except ValidationError:
        raise InvalidShopper("The email must be an address such as name@example.com.") from None
    try:
        User.username_validator(username)
        validate_password(password, user=User(username=username, email=email))
    except ValidationError as exc:
        raise InvalidShopper(" ".join(exc.messages)) from None
    if User.objects.filter(username=username).exists():
        raise UsernameTaken
    try:
        return User.objects.create_user(username=username, email=email, password=password)
    except IntegrityError:  # taken by a concurrent sign-up
        raise UsernameTaken from None


def shoppers_create_bulk(*, count: int, prefix: str, password: str) -> int:
    """Create shoppers ``<prefix>0 .. <prefix>{count-1}`` in bulk; existing ones are left as they are.

    The password is hashed once and shared, which is what makes 100,000 accounts take seconds.
    Returns how many were created.
    """
    User = get_user_model()
    hashed = make_password(password)
    created = 0
    for start in range(0, count, BULK_BATCH):
        names = [f"{prefix}{i}" for i in range(start, min(start + BULK_BATCH, count))]
        with transaction.atomic():
            existing = set(User.objects.filter(username__in=names).values_list("username", flat=True))
            fresh = [User(username=name, password=hashed) for name in names if name not in existing]
            User.objects.bulk_create(fresh, batch_size=1_000, ignore_conflicts=True)
        created += len(fresh)
    return created
