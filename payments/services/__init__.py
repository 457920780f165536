"""Writes of payments: card holds, purchases, cancellations, refunds, Stripe events."""

from .authorizations import (
    AuthorizationOutcome,
    authorization_capture,
    authorization_client_secret,
    authorization_open_get,
    authorization_place,
    authorization_placing_claim,
    authorization_schedule,
    authorization_sync,
    authorization_transition,
    authorizations_release_scheduled,
    card_accounts_count,
    shopper_lock,
)
from .cancellations import (
    CancelBatch,
    authorization_cancel,
    authorization_cancel_for_shopper,
    authorization_reconcile_after_capture,
    authorization_void,
    authorizations_cancel_for_shoppers,
    authorizations_near_deadline,
    drop_authorizations_cancel,
    drop_holds_releasable,
    drops_with_releasable_holds,
)
from .refunds import order_refund, refund_restock
from .webhooks import stripe_event_process, stripe_event_verify

__all__ = [
    "AuthorizationOutcome",
    "CancelBatch",
    "authorization_cancel",
    "authorization_cancel_for_shopper",
    "authorization_capture",
    "authorization_client_secret",
    "authorization_open_get",
    "authorization_place",
    "authorization_placing_claim",
    "authorization_reconcile_after_capture",
    "authorization_schedule",
    "authorization_sync",
    "authorization_transition",
    "authorization_void",
    "authorizations_cancel_for_shoppers",
    "authorizations_near_deadline",
    "authorizations_release_scheduled",
    "card_accounts_count",
    "drop_authorizations_cancel",
    "drop_holds_releasable",
    "drops_with_releasable_holds",
    "order_refund",
    "refund_restock",
    "shopper_lock",
    "stripe_event_process",
    "stripe_event_verify",
]
