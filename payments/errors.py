"""Domain errors of payments; each has a stable code and the HTTP status the API maps it to."""

from __future__ import annotations

import math

from flashsale.errors import DomainError


class PaymentError(DomainError):
    code = "payment_error"
    status = 402
    message = "The payment could not be made."


class CardDeclined(PaymentError):
    code = "card_declined"
    message = "Your card was declined."


class PaymentFailed(PaymentError):
    code = "payment_failed"
    message = "The payment could not be taken; nothing was charged and the unit is back on sale."


class AuthorizationRequired(PaymentError):
    code = "authorization_required"
    message = "Authorize a card for this drop first."


class InvalidPaymentMethod(PaymentError):
    code = "invalid_request"
    status = 400
    message = "Stripe does not know this payment method."


class DropClosed(PaymentError):
    code = "drop_closed"
    status = 409
    message = "This drop has ended or sold out."


class DropNotOpen(PaymentError):
    code = "drop_not_open"
    status = 409
    message = "Cards can be authorized once the pre-queue opens."


class AuthorizationInProgress(PaymentError):
    code = "authorization_in_progress"
    status = 409
    message = "Your card is being authorized; try again in a moment."


class PaymentsUnavailable(PaymentError):
    code = "payments_unavailable"
    status = 503
    message = "The payment provider did not answer; try again in a moment."


class PaymentsBusy(PaymentError):
    """The shared Stripe rate limit has no token now; ``wait_ms`` says when one is due."""

    code = "payments_busy"
    status = 503
    message = "Card payments are busy right now; your turn comes in a few seconds."

    def __init__(self, wait_ms: int, message: str | None = None) -> None:
        super().__init__(message)
        self.wait_ms = wait_ms

    @property
    def retry_after(self) -> int:
        """Whole seconds to wait, at least 1 (the ``Retry-After`` header)."""
        return max(1, math.ceil(self.wait_ms / 1000))


class PurchaseInProgress(PaymentError):
    code = "purchase_in_progress"
    status = 409
    message = "Your purchase is being processed; try again in a moment."


class NotRefundable(PaymentError):
    code = "not_refundable"
    status = 409
    message = "Only a paid order with a captured card payment can be refunded."


class InvalidSignature(PaymentError):
    code = "invalid_signature"
    status = 400
    message = "The Stripe-Signature header does not match the body."
