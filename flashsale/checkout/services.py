"""The flows of a flash sale that span the apps: the card step, the hold scheduler, admission's follow-ups,
the one-click purchase, and recovery after Redis lost a drop.

The card is given before the queue and kept (no Stripe call); its hold is placed in ticket order just
ahead of admission, at the shared Stripe rate, and the queue admits a shopper only once it is placed.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

import stripe
from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone
from redis.exceptions import LockError, RedisError

from flashsale.redis import redis_client
from inventory import selectors as inventory_selectors
from inventory import services as inventory_services
from inventory.errors import SoldOut
from inventory.models import Drop, DropState, Order, OrderStatus
from inventory.redis_keys import inventory_keys
from inventory.selectors import stock_get
from payments import selectors as payment_selectors
from payments import services as payment_services
from payments import tasks as payment_tasks
from payments.errors import AuthorizationRequired, PaymentFailed, PaymentsBusy, PaymentsUnavailable, PurchaseInProgress
from payments.models import Authorization, AuthorizationStatus
from payments.stripe_client import STRIPE_NETWORK_ERRORS, stripe_token_await, stripe_tokens_take
from waitingroom import persistence
from waitingroom import selectors as queue_selectors
from waitingroom import services as queue_services
from waitingroom.redis_keys import queue_keys
from waitingroom.scripts import HoldState

from .redis_keys import holds_lock_key, recover_lock_key

logger = logging.getLogger(__name__)

EXPIRED_RELEASE_BATCH = 500  # shoppers per release task (one query for their holds)
NO_CARD = ""  # the hold scheduler's word for a shopper whose card is gone
HOLDS_MOST_PER_RUN = 2_000
RECOVER_LOCK_SECONDS = 120  # longer than rebuilding the largest queue takes


# --- The card step ---------------------------------------------------------------------------------


def hold_state_of(authorization: Authorization) -> str | None:
    """The queue's view (``HoldState``) of an authorization; None when the shopper has no card any more."""
    since = int(authorization.updated_at.timestamp() * 1000)
    match authorization.status:
        case AuthorizationStatus.SCHEDULED:
            return HoldState.SCHEDULED
        case AuthorizationStatus.AUTHORIZED | AuthorizationStatus.CAPTURED:
            return HoldState.READY
        case AuthorizationStatus.REQUIRES_ACTION:
            return HoldState.failed(since, "authentication_required")
        case AuthorizationStatus.FAILED:
            return HoldState.failed(since, authorization.failure_code or "card_declined")
    return None


def card_give(*, drop: Drop, shopper, payment_method: str) -> payment_services.AuthorizationOutcome:
    """Keep the shopper's card for the drop and tell the queue (no Stripe call; the hold comes later).

    Giving the same card again returns the authorization that counts and repairs the queue's view of
    it, should Redis have lost it. A shopper whose payment is required gives another card here and
    keeps their place. Raises payments' ``DropNotOpen`` or ``DropClosed``.
    """
    outcome = payment_services.authorization_schedule(drop=drop, shopper=shopper, payment_method=payment_method)
    if outcome.created:
        queue_services.hold_card_given(drop_id=drop.pk, shopper_id=shopper.pk)
    else:
        state = hold_state_of(outcome.authorization)
        if state is not None:
            queue_services.hold_state_repair(drop_id=drop.pk, shopper_id=shopper.pk, state=state)
    return outcome


def card_refresh(*, drop: Drop, authorization: Authorization) -> str | None:
    """Read a hold waiting for 3-D Secure again (the shopper may have finished it); return its client secret.

    A hold that is now placed lets the shopper be admitted at once.
    """
    waiting = authorization.status == AuthorizationStatus.REQUIRES_ACTION
    secret = payment_services.authorization_client_secret(authorization)
    if waiting and authorization.status != AuthorizationStatus.REQUIRES_ACTION:  # it changed just now
        state = hold_state_of(authorization)
        if state is not None:
            queue_services.hold_states_set(drop=drop, states={authorization.shopper_id: state})
    return secret


def stripe_event_apply(*, event) -> payment_services.EventOutcome:
    """Apply a verified Stripe event once; a hold it changed (3-D Secure passed, canceled at Stripe) changes the
    queue's view of it too, so admission follows."""
    outcome = payment_services.stripe_event_process(event=event)
    authorization = outcome.authorization
    if authorization is not None:
        state = hold_state_of(authorization)
        drop = Drop.objects.get(pk=authorization.drop_id)
        if state is None:
            queue_services.hold_card_released(drop_id=drop.pk, shopper_ids=[authorization.shopper_id])
        else:
            queue_services.hold_states_set(drop=drop, states={authorization.shopper_id: state})
    return outcome


# --- The hold scheduler ----------------------------------------------------------------------------


@dataclass
class HoldsRun:
    due: int = 0  # holds that were due when the run began
    placed: int = 0
    failed: int = 0
    wait_ms: int = 0  # the bucket was empty: when a token is due
    states: dict[int, str] = field(default_factory=dict)
    released: list[int] = field(default_factory=list)  # shoppers with no card any more (the queue passes them)


def holds_ahead(*, drop: Drop) -> int:
    """How many tickets past serving should have their holds placed: a few seconds of admission, and never
    more than the cap on admitted shoppers lets in (a hold placed for a shopper who will not be admitted
    before the sell-out costs two Stripe calls for nothing)."""
    stock = stock_get(drop=drop)
    free = stock.redis if stock.redis is not None else 0
    active = queue_selectors.queue_stats_get(drop_id=drop.pk).admitted
    room = drop.admitted_cap_multiple * free - active
    return max(0, min(math.ceil(drop.admission_rate * settings.HOLDS_AHEAD_SECONDS), room))


def holds_place_due(*, drop: Drop, budget_seconds: float | None = None) -> HoldsRun:
    """Place the holds of the shoppers next in line, in ticket order, at the shared Stripe rate.

    One run per drop at a time (a Redis lock); each hold is claimed in the database before its one
    Stripe call, whose idempotency key is the authorization's, so a run that dies midway places no
    hold twice and the next run finishes what it left (a stale claim is taken over). A run lasts at
    most its budget (waiting for the Stripe bucket's tokens as they come); the next one (beat, every
    second) goes on.
    """
    budget = settings.HOLDS_RUN_SECONDS if budget_seconds is None else budget_seconds
    deadline = time.monotonic() + budget
    # The lock outlives a run by the one Stripe call that may still be on its way, and a margin: should
    # the worker die mid-run, the next run starts once it expires.
    ttl = math.ceil(budget + float(settings.STRIPE_TIMEOUT) + 5)
    lock = redis_client().lock(holds_lock_key(drop.pk), timeout=ttl, blocking=False)
    if not lock.acquire():
        return HoldsRun()
    try:
        due = queue_selectors.holds_due_get(
            drop=drop,
            ahead=holds_ahead(drop=drop),
            most=HOLDS_MOST_PER_RUN,
            stale_ms=int(settings.HOLDS_PLACING_STALE_SECONDS * 1000),
        )
        run = HoldsRun(due=len(due.due))
        _holds_waiting_sync(drop=drop, run=run, waiting=[shopper for shopper, _ in due.waiting])
        queue_services.hold_states_set(drop=drop, states=run.states)  # the waiting ones that fixed their payment
        _holds_place(drop=drop, run=run, shoppers=[shopper for shopper, _ in due.due], deadline=deadline)
        queue_services.hold_card_released(drop_id=drop.pk, shopper_ids=run.released)
        return run
    finally:
        try:
            lock.release()
        except LockError:
            logger.warning("drop %s: the hold scheduler's lock expired during a run", drop.pk)


def _holds_waiting_sync(*, drop: Drop, run: HoldsRun, waiting: list[int]) -> None:
    """Shoppers whose payment was required may have fixed it elsewhere (3-D Secure done, a webhook)."""
    if not waiting:
        return
    latest = {
        a.shopper_id: a for a in Authorization.objects.filter(drop=drop, shopper_id__in=waiting).order_by("attempt")
    }
    for shopper_id, authorization in latest.items():
        state = hold_state_of(authorization)
        if state is not None and HoldState.failure(state) is None:
            run.states[shopper_id] = state


def _holds_place(*, drop: Drop, run: HoldsRun, shoppers: list[int], deadline: float) -> None:
    """Place holds for ``shoppers`` in order, ``HOLDS_CONCURRENCY`` at a time, until the time runs out.

    The Stripe bucket refills continuously: a worker that finds it empty waits for its next token (the
    wait the bucket names, bounded by the run's time budget; this runs on the ``holds`` queue's own
    worker, never in a request) and tries the same shopper again. Each hold's state reaches the queue as
    soon as it is known, so admission does not wait for the run to end.
    """
    order: Iterator[int] = iter(shoppers)
    turn = threading.Lock()
    stop = threading.Event()

    def worker() -> None:
        shopper_id = None
        while not stop.is_set() and time.monotonic() < deadline:
            if shopper_id is None:
                with turn:
                    shopper_id = next(order, None)
                if shopper_id is None:
                    return
            try:
                state = _hold_place(drop=drop, shopper_id=shopper_id)
            except PaymentsBusy as busy:
                run.wait_ms = busy.wait_ms
                stop.wait(min(busy.wait_ms / 1000, max(0.0, deadline - time.monotonic())))
                continue
            except PaymentsUnavailable:
                stop.set()  # Stripe did not answer: the next run places it again (same key)
                return
            if state == NO_CARD:
                run.released.append(shopper_id)
            elif state is not None:
                queue_services.hold_states_set(drop=drop, states={shopper_id: state})
                run.states[shopper_id] = state
                if HoldState.failure(state) is None:
                    run.placed += 1
                else:
                    run.failed += 1
            shopper_id = None

    workers = max(1, int(settings.HOLDS_CONCURRENCY))
    if workers == 1:
        worker()
        return

    def threaded() -> None:
        try:
            worker()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"holds-{drop.pk}") as pool:
        for _ in range(workers):
            pool.submit(threaded)


def _hold_place(*, drop: Drop, shopper_id: int) -> str | None:
    """Place one shopper's hold; return the queue's new view of it (None: nothing to change now; ``NO_CARD``:
    the shopper has no card any more, so the queue must not wait for one)."""
    authorization = payment_services.authorization_open_get(drop_id=drop.pk, shopper_id=shopper_id)
    if authorization is None:
        latest = payment_selectors.authorization_latest_get(drop_id=drop.pk, shopper_id=shopper_id)
        state = hold_state_of(latest) if latest is not None else None
        return NO_CARD if state is None else state
    if authorization.status != AuthorizationStatus.SCHEDULED:
        return hold_state_of(authorization)  # placed already (the queue's view was behind)
    stripe_tokens_take(background=True)
    claimed = payment_services.authorization_placing_claim(authorization_id=authorization.pk)
    if claimed is None:
        return None  # another placer holds a fresh claim on it
    now_ms = int(time.time() * 1000)
    queue_services.hold_states_set(drop=drop, states={shopper_id: HoldState.placing(now_ms)})
    try:
        placed = payment_services.authorization_place(authorization=claimed)
    except PaymentsUnavailable:
        queue_services.hold_states_set(drop=drop, states={shopper_id: HoldState.SCHEDULED})
        raise
    if placed.status == AuthorizationStatus.AUTHORIZED and placed.card_fingerprint:
        others = payment_services.card_accounts_count(
            drop_id=drop.pk, fingerprint=placed.card_fingerprint, excluding=shopper_id
        )
        if others >= drop.max_accounts_per_card:
            return _card_limit_refuse(drop=drop, authorization=placed)
    return hold_state_of(placed)


def _card_limit_refuse(*, drop: Drop, authorization: Authorization) -> str:
    """Too many accounts hold this card on the drop: release the hold now and ask for another card."""
    payment_services.authorization_transition(
        authorization=authorization,
        to=AuthorizationStatus.FAILED,
        frm=(AuthorizationStatus.AUTHORIZED,),
        failure_code="card_limit",
    )
    queue_services.bots_count_blocked(drop=drop, reasons=["card_limit"])
    # The hold exists at Stripe: cancel it at the allowed rate (the task reads it back whatever our status).
    transaction.on_commit(lambda: payment_tasks.hold_void.delay(authorization.pk, "card_limit"))
    return HoldState.failed(int(time.time() * 1000), "card_limit")


def holds_place_all() -> dict[str, int]:
    """Run the hold scheduler for every drop that admits shoppers (beat, every second)."""
    now = timezone.now()
    placed = {}
    drops = list(Drop.objects.select_related("product").filter(starts_at__lte=now, is_draft=False, paused=False)
                 .exclude(ends_at__lte=now))  # fmt: skip
    for drop in drops:
        if drop.state_at(remaining=1) is not DropState.LIVE:
            continue
        run = holds_place_due(drop=drop, budget_seconds=settings.HOLDS_RUN_SECONDS / max(1, len(drops)))
        placed[drop.slug] = run.placed
    return placed


# --- Admission ticks -------------------------------------------------------------------------------


def drops_tick_all(*, now_ms: int | None = None) -> dict[str, int]:
    """Tick every live drop's admission (beat, every second) and release the holds of those whose turn ended."""
    ticked = {}
    for slug, tick in queue_services.queue_tick_all(now_ms=now_ms).items():
        if tick.expired:
            admissions_ended(drop_id=tick.drop_id, shopper_ids=tick.expired)
        ticked[slug] = tick.serving
    return ticked


def holds_releasable_after_admission(*, drop_id: int, shopper_ids: list[int]) -> list[int]:
    """Of shoppers whose admission ended, those whose hold may be canceled: not one whose purchase is in
    flight (a pending order, or the purchase lock held), whose capture would otherwise find it canceled."""
    buying = set(
        Order.objects.filter(drop_id=drop_id, shopper_id__in=shopper_ids, status=OrderStatus.PENDING).values_list(
            "shopper_id", flat=True
        )
    )
    pipe = redis_client().pipeline(transaction=False)
    for shopper_id in shopper_ids:
        pipe.exists(payment_services.purchase_lock_key(drop_id, shopper_id))
    locked = {shopper_id for shopper_id, held in zip(shopper_ids, pipe.execute(), strict=True) if held}
    return [shopper_id for shopper_id in shopper_ids if shopper_id not in buying | locked]


def admissions_ended(*, drop_id: int, shopper_ids: list[int]) -> None:
    """Release the holds of shoppers whose checkout window closed unused or who passed their turn: one task
    per batch, not per shopper (a tick that expired thousands would otherwise overrun its time limit)."""
    from . import tasks  # tasks call these services

    for start in range(0, len(shopper_ids), EXPIRED_RELEASE_BATCH):
        batch = shopper_ids[start : start + EXPIRED_RELEASE_BATCH]
        transaction.on_commit(lambda b=batch: tasks.admissions_expired_release.delay(drop_id, b))


# --- The one-click purchase ------------------------------------------------------------------------


@dataclass(frozen=True)
class PurchaseOutcome:
    order: Order
    created: bool


def purchase_make(*, drop: Drop, shopper, quantity: int = 1, idempotency_key: str = "") -> PurchaseOutcome:
    """Buy ``quantity`` units for an admitted shopper with their card hold, once per shopper and drop.

    Claim the unit, reserve the order, capture the hold, mark it paid. The order and the stock agree
    whatever fails: a refused or timed-out capture fails the order and puts its units back on sale at
    once; a crash between claim and capture leaves a pending order whose hold the inventory's sweep
    expires. The same purchase again (same shopper and drop, or the same ``Idempotency-Key``) returns
    the first order. Raises the waiting room's ``NotAdmitted``/``AdmissionExpired``, the inventory's
    ``SoldOut``/``LimitReached``/``InsufficientStock``, payments' ``AuthorizationRequired``,
    ``PaymentsBusy``, ``PurchaseInProgress`` or ``PaymentFailed``.
    """
    done = _purchase_existing(drop=drop, shopper=shopper, idempotency_key=idempotency_key)
    if done is not None:
        return PurchaseOutcome(done, created=False)
    with payment_services.shopper_lock(
        drop_id=drop.pk, shopper_id=shopper.pk, purpose="purchase", error=PurchaseInProgress
    ):
        done = _purchase_existing(drop=drop, shopper=shopper, idempotency_key=idempotency_key)
        if done is not None:
            return PurchaseOutcome(done, created=False)
        queue_services.admission_check(drop=drop, shopper_id=shopper.pk)
        authorization = Authorization.objects.filter(
            drop=drop, shopper=shopper, status=AuthorizationStatus.AUTHORIZED
        ).first()
        if authorization is None:
            failed = Order.objects.filter(drop=drop, shopper=shopper, status=OrderStatus.FAILED).first()
            if failed is not None:
                return PurchaseOutcome(failed, created=False)  # the capture failed and the hold is gone
            if inventory_selectors.drop_state_quick(drop=drop) is DropState.SOLD_OUT:
                raise SoldOut  # the holds were released because it sold out: say that, not "no card"
            raise AuthorizationRequired
        # The capture's token first (waiting briefly for its turn): a busy pipeline refuses before any unit is taken.
        stripe_token_await(seconds=settings.STRIPE_CAPTURE_WAIT_SECONDS)
        claim = inventory_services.unit_claim(drop=drop, shopper_id=shopper.pk, quantity=quantity)
        order = inventory_services.order_reserve(claim=claim, shopper=shopper, idempotency_key=idempotency_key)
        try:
            payment_services.authorization_capture(authorization=authorization, order=order)
        except PaymentFailed:
            inventory_services.order_mark_failed(order=order, failure_code="payment_failed")
            raise
        if not inventory_services.order_mark_paid(order=order):
            # The hold expired while Stripe answered and the sweep failed the order: give the money back.
            logger.error("order %s was captured after its hold expired; refunding", order.pk)
            transaction.on_commit(lambda: payment_tasks.authorization_reconcile.delay(authorization.pk, order.pk))
            order.refresh_from_db()
            return PurchaseOutcome(order, created=True)
    queue_services.admission_complete(drop=drop, shopper_id=shopper.pk)
    if claim.stock_after == 0:
        transaction.on_commit(lambda: payment_tasks.drop_authorizations_release.delay(drop.pk))
    return PurchaseOutcome(order, created=True)


def _purchase_existing(*, drop: Drop, shopper, idempotency_key: str) -> Order | None:
    """Return the order this request repeats, if any; raise ``PurchaseInProgress`` while it is still pending."""
    orders = Order.objects.filter(shopper=shopper)
    order = None
    if idempotency_key:
        order = orders.filter(drop=drop, idempotency_key=idempotency_key).first()
    if order is None:
        order = orders.filter(drop=drop, status__in=[OrderStatus.PENDING, OrderStatus.PAID]).first()
    if order is not None and order.status == OrderStatus.PENDING:
        raise PurchaseInProgress
    return order


# --- Money: purchases that stopped midway --------------------------------------------------------


@dataclass
class SettleRun:
    paid: int = 0  # captured at Stripe: the order is paid after all
    failed: int = 0  # not captured: the order fails and its unit is back on sale
    refunded: int = 0  # captured for an order that cannot be paid: the money goes back
    reconciled: int = 0  # captures that timed out, settled (canceled or refunded)


def purchases_settle(*, now=None, limit: int = 200) -> SettleRun:
    """Finish every purchase that stopped between reserving its order and being paid (beat, every 10 s).

    The pending order, written before the capture, is the record of the intent. Once it is older than
    the hold time and a Stripe call (no request can still be capturing for it), Stripe says what
    happened: captured, the order is marked paid (its unit is still reserved for the shopper in the
    database) or, when it cannot be, the money is refunded; not captured, the order fails and the unit
    goes back on sale. Captures that timed out whose follow-up task was lost (the broker is the same
    Redis) are settled too. Nothing here depends on a message or a process surviving: what Stripe
    captured always ends up paid or refunded.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.INVENTORY_HOLD_SECONDS + float(settings.STRIPE_TIMEOUT) * 2)
    run = SettleRun()
    try:
        for order in inventory_selectors.orders_pending_before(cutoff=cutoff, limit=limit):
            outcome = _order_settle(order=order)
            setattr(run, outcome, getattr(run, outcome) + 1)
        timed_out = Authorization.objects.filter(
            status=AuthorizationStatus.FAILED, failure_code="capture_timeout", updated_at__lt=cutoff
        )
        for authorization in timed_out.order_by("updated_at")[:limit]:
            order = (
                Order.objects.filter(drop_id=authorization.drop_id, shopper_id=authorization.shopper_id)
                .exclude(status=OrderStatus.PAID)
                .order_by("-created_at")
                .first()
            )
            if order is not None:
                payment_services.authorization_reconcile_after_capture(
                    authorization_id=authorization.pk, order_id=order.pk
                )
                run.reconciled += 1
    except (PaymentsBusy, *STRIPE_NETWORK_ERRORS, stripe.APIError) as exc:
        # Stripe's budget is spent or Stripe did not answer: the next run (10 s) goes on where this stopped.
        logger.info("settling stopped purchases paused: %s", exc)
    if run.paid or run.failed or run.refunded or run.reconciled:
        logger.warning("settled stopped purchases: %s", run)
    return run


def _order_settle(*, order: Order) -> str:
    authorization = (
        Authorization.objects.filter(
            drop_id=order.drop_id, shopper_id=order.shopper_id, payment_intent_id__isnull=False
        )
        .order_by("-attempt")
        .first()
    )
    if authorization is None:
        inventory_services.order_mark_failed(order=order, failure_code="purchase_stopped")
        return "failed"
    stripe_tokens_take(background=True)
    if payment_services.authorization_intent_status(authorization=authorization) != "succeeded":
        inventory_services.order_mark_failed(order=order, failure_code="purchase_stopped")
        return "failed"
    payment_services.authorization_captured_record(authorization=authorization, order=order)
    if inventory_services.order_mark_paid(order=order):
        queue_services.admission_complete(drop=order.drop, shopper_id=order.shopper_id)
        return "paid"
    payment_services.stray_capture_refund(authorization=authorization, order=order)
    return "refunded"


# --- Recovery after Redis lost a drop --------------------------------------------------------------


def drop_recover_if_lost(*, drop: Drop) -> bool:
    """Rebuild the drop's stock, holds and queue when Redis lost them (the stock key is the sign); True if it did.

    Until the stock key is back, claims fail closed, the tick admits nobody, and every answer about
    the drop is "try again" (503). So the stock is written last: a join or a read in the middle of the
    rebuild still sees the drop as missing, never a half-restored queue (a ticket in an empty queue
    that the rebuild then wipes, or "no card" before the holds are back). One process at a time.
    """
    client = redis_client()
    if client.exists(inventory_keys(drop.pk).stock):
        return False
    lock = client.lock(recover_lock_key(drop.pk), timeout=RECOVER_LOCK_SECONDS, blocking=False)
    if not lock.acquire():
        return False  # another process is rebuilding it
    try:
        if client.exists(inventory_keys(drop.pk).stock):
            return False  # rebuilt while this process waited
        logger.error("drop %s: its Redis keys are gone; rebuilding card holds, queue and stock from the database",
                     drop.pk)  # fmt: skip
        states = {}
        for shopper_id, authorization in payment_selectors.authorizations_latest(drop_id=drop.pk).items():
            state = hold_state_of(authorization)
            if state is not None:
                states[shopper_id] = state
        queue_services.holds_restore(drop_id=drop.pk, states=states)
        persistence.queue_rebuild(drop=drop)
        inventory_services.inventory_rebuild(drop=drop)
    finally:
        with contextlib.suppress(LockError):
            lock.release()
    # The admissions the rebuild restored were announced by no tick: tell those shoppers (best effort).
    with contextlib.suppress(RedisError):
        queue_services.admissions_announce(drop=drop)
    return True


def drops_open() -> list[Drop]:
    """The armed drops whose pre-queue is open and that have not ended: those whose Redis state must exist."""
    now = timezone.now()
    drops = Drop.objects.filter(armed_at__isnull=False, prequeue_opens_at__lte=now).exclude(ends_at__lte=now)
    # A sold-out drop whose keys were released on purpose is not rebuilt (unless a unit came back).
    return [drop for drop in drops if drop.redis_released_at is None or not drop.closed(now)]


def drops_recover_lost(*, drops: list[Drop]) -> list[str]:
    """Rebuild those of ``drops`` whose Redis state is gone (one round trip when none is); their slugs."""
    if not drops:
        return []
    pipe = redis_client().pipeline(transaction=False)
    for drop in drops:
        pipe.exists(inventory_keys(drop.pk).stock)
    present = pipe.execute()
    lost = [drop for drop, there in zip(drops, present, strict=True) if not there]
    return [drop.slug for drop in lost if drop_recover_if_lost(drop=drop)]


def queue_save_all() -> dict[str, int]:
    """For every open, armed drop: recover what Redis lost, else save the queue's journal (beat, every second)."""
    saved = {}
    for drop in drops_open():
        if drop_recover_if_lost(drop=drop):
            saved[drop.slug] = -1
        else:
            saved[drop.slug] = persistence.queue_persist(drop=drop)
    return saved


# --- Redis keys of closed drops --------------------------------------------------------------------

RELEASE_RETRY = timedelta(hours=1)  # released drops scanned again meanwhile, should a key be left or written late


def drops_redis_release_due() -> dict[str, int]:
    """Delete the Redis keys of drops closed for DROP_REDIS_KEEP_SECONDS, once their queue is saved (beat).

    Orders, card holds and queue entries live in the database; the drop's page, the dashboard and
    the shoppers' outcomes read Redis until then. Returns the keys deleted per drop.
    """
    now = timezone.now()
    released = {}
    cutoff = now - timedelta(seconds=settings.DROP_REDIS_KEEP_SECONDS)
    for drop in inventory_selectors.drops_redis_releasable(cutoff=cutoff):
        persistence.queue_persist(drop=drop)  # the journal's last entries
        if redis_client().llen(queue_keys(drop.pk).journal):
            continue  # another process is saving it: the next run
        released[drop.slug] = inventory_services.drop_redis_release(drop=drop)
        logger.info("drop %s: closed since before %s; %s Redis keys deleted", drop.pk, cutoff, released[drop.slug])
    for drop in inventory_selectors.drops_redis_released_since(since=now - RELEASE_RETRY):
        if drop.slug in released or not drop.closed(now):
            continue
        if deleted := inventory_services.drop_redis_release(drop=drop):
            released[drop.slug] = deleted
    return released
