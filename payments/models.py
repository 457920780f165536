"""Card pre-authorizations (Stripe PaymentIntents with manual capture)."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class AuthorizationStatus(models.TextChoices):
    REQUIRES_ACTION = "requires_action"
    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    CANCELED = "canceled"
    FAILED = "failed"


class Authorization(models.Model):
    """A hold on a shopper's card for one drop: price x per-customer limit, captured on purchase."""

    drop = models.ForeignKey("inventory.Drop", on_delete=models.PROTECT, related_name="authorizations")
    shopper = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="authorizations")
    status = models.CharField(max_length=24, choices=AuthorizationStatus.choices)
    payment_intent_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    card_brand = models.CharField(max_length=32, blank=True)
    card_last4 = models.CharField(max_length=4, blank=True)
    card_fingerprint = models.CharField(max_length=64, blank=True, db_index=True)
    capture_before = models.DateTimeField(null=True, blank=True)
    failure_code = models.CharField(max_length=64, blank=True)
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
        ]
        indexes = [models.Index(fields=["drop", "status"])]

    def __str__(self) -> str:
        return f"authorization {self.pk} ({self.status})"
