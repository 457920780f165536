"""Writes of payments: card holds, purchases, cancellations, refunds, Stripe events."""

from .authorizations import (
    AuthorizationOutcome,
    authorization_authorize,
    authorization_capture,
    authorization_client_secret,
    authorization_open_get,
    authorization_sync,
    authorization_transition,
    authorized_rebuild,
)
from .cancellations import (
    CancelBatch,
    authorization_cancel,
    authorization_cancel_for_shopper,
    authorization_reconcile_after_capture,
    authorizations_cancel_for_shoppers,
    authorizations_near_deadline,
    drop_authorizations_cancel,
    drop_holds_releasable,
    drops_with_releasable_holds,
)
from .purchases import PurchaseOutcome, purchase_make
from .refunds import order_refund, refund_restock
from .webhooks import stripe_event_process, stripe_event_verify

__all__ = [
    "AuthorizationOutcome",
    "CancelBatch",
    "PurchaseOutcome",
    "authorization_authorize",
    "authorization_cancel",
    "authorization_cancel_for_shopper",
    "authorization_capture",
    "authorization_client_secret",
    "authorization_open_get",
    "authorization_reconcile_after_capture",
    "authorization_sync",
    "authorization_transition",
    "authorizations_cancel_for_shoppers",
    "authorizations_near_deadline",
    "authorized_rebuild",
    "drop_authorizations_cancel",
    "drop_holds_releasable",
    "drops_with_releasable_holds",
    "order_refund",
    "purchase_make",
    "refund_restock",
    "stripe_event_process",
    "stripe_event_verify",
]
