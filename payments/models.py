"""Card pre-authorizations (Stripe PaymentIntents with manual capture), Stripe customers and events."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class AuthorizationStatus(models.TextChoices):
    SCHEDULED = "scheduled"  # the card is given; its hold is placed when the shopper's turn comes near
    REQUIRES_ACTION = "requires_action"
    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    CANCELED = "canceled"
    FAILED = "failed"


# A hold placed at Stripe that nobody captured yet (a scheduled card has no hold to cancel).
OPEN_STATUSES = (AuthorizationStatus.REQUIRES_ACTION, AuthorizationStatus.AUTHORIZED)


class Authorization(models.Model):
    """A hold on a shopper's card for one drop: price x per-customer limit, captured on purchase."""

    drop = models.ForeignKey("inventory.Drop", on_delete=models.PROTECT, related_name="authorizations")
    shopper = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="authorizations")
    status = models.CharField(max_length=24, choices=AuthorizationStatus.choices)
    attempt = models.PositiveSmallIntegerField(
        default=1, help_text="1 for the shopper's first card on this drop; part of the idempotency key."
    )
    payment_method_id = models.CharField(max_length=255, blank=True, help_text="The card the shopper gave (pm_...).")
    placing_since = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the hold scheduler started placing this hold (a claim; stale after a minute).",
    )
    payment_intent_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    amount_captured = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    card_brand = models.CharField(max_length=32, blank=True)
    card_last4 = models.CharField(max_length=4, blank=True)
    card_fingerprint = models.CharField(max_length=64, blank=True, db_index=True)
    capture_before = models.DateTimeField(null=True, blank=True)
    failure_code = models.CharField(max_length=64, blank=True)
    cancellation_reason = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["drop", "shopper"],
                condition=~Q(status__in=["canceled", "failed"]),
                name="authorization_one_open_per_shopper_drop",
            ),
            models.UniqueConstraint(fields=["drop", "shopper", "attempt"], name="authorization_attempt_unique"),
        ]
        indexes = [models.Index(fields=["drop", "status"]), models.Index(fields=["status", "capture_before"])]

    def __str__(self) -> str:
        return f"authorization {self.pk} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


class StripeCustomer(models.Model):
    """The Stripe Customer that holds a shopper's cards."""

    shopper = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="stripe_customer")
    customer_id = models.CharField(max_length=255, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.customer_id


class StripeEvent(models.Model):
    """A webhook event already processed: a replayed event id changes nothing."""

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"


class Refund(models.Model):
    """A refund of a paid order made through Stripe."""

    order = models.ForeignKey("inventory.Order", on_delete=models.PROTECT, related_name="refunds")
    authorization = models.ForeignKey(Authorization, on_delete=models.PROTECT, related_name="refunds")
    refund_id = models.CharField(max_length=255, unique=True)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=32)
    restocked = models.BooleanField(default=False, help_text="The refunded units were put back on sale.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        permissions = [
            ("issue_refund", "Can refund paid orders through Stripe"),
            ("restock_refund", "Can put refunded units back on sale"),
        ]

    def __str__(self) -> str:
        return f"refund {self.refund_id} of order {self.order_id}"
