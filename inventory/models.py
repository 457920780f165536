"""Products, drops and the orders that sell their units."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone


class Product(models.Model):
    sku = models.SlugField(max_length=64, unique=True)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    image_url = models.URLField(blank=True)
    price = models.DecimalField(max_digits=10, decimal_places=2, validators=[MinValueValidator(Decimal("0.50"))])
    currency = models.CharField(max_length=3, default="usd")

    class Meta:
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title


class DropState(models.TextChoices):
    SCHEDULED = "scheduled"
    PREQUEUE = "prequeue"
    LIVE = "live"
    PAUSED = "paused"
    SOLD_OUT = "sold_out"
    ENDED = "ended"


class Drop(models.Model):
    """One SKU on sale for a limited time; its live stock is counted in Redis."""

    slug = models.SlugField(max_length=64, unique=True)
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="drops")
    is_draft = models.BooleanField(default=False, help_text="Drafts are hidden from shoppers.")
    prequeue_opens_at = models.DateTimeField(help_text="Shoppers may join the pre-queue from this moment.")
    starts_at = models.DateTimeField(help_text="The pre-queue is shuffled and admission begins.")
    ends_at = models.DateTimeField(null=True, blank=True)
    quantity = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    sold = models.PositiveIntegerField(
        default=0, editable=False, help_text="Units in pending or paid orders: the database's own guard."
    )
    per_customer_limit = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1)])
    admission_rate = models.PositiveIntegerField(
        default=500, validators=[MinValueValidator(1)], help_text="Shoppers admitted per second."
    )
    checkout_window = models.PositiveIntegerField(
        default=300, validators=[MinValueValidator(10)], help_text="Seconds an admitted shopper has to buy."
    )
    admitted_cap_multiple = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(1)],
        help_text="Admitted shoppers who have not finished are capped at this many times the free stock.",
    )
    bot_threshold = models.PositiveSmallIntegerField(
        default=60, help_text="Suspicion score at which a join is refused or parked (see bot action)."
    )
    bot_action = models.CharField(
        max_length=8,
        choices=[("refuse", "Refuse (403 bot_suspected)"), ("park", "Park in a queue that is never admitted")],
        default="refuse",
    )
    max_accounts_per_device = models.PositiveSmallIntegerField(
        default=2, validators=[MinValueValidator(1)], help_text="Accounts that may queue from one device."
    )
    max_accounts_per_card = models.PositiveIntegerField(
        default=1,
        validators=[MinValueValidator(1)],
        help_text="Accounts that may queue with one card (Stripe's card fingerprint). Stripe's test cards all "
        "share one fingerprint, so a demo drop paid with them needs a high value.",
    )
    min_account_age = models.PositiveIntegerField(
        default=0, help_text="Seconds an account must exist before it may join (0: no minimum)."
    )
    paused = models.BooleanField(default=False)
    armed_at = models.DateTimeField(null=True, blank=True, editable=False)
    redis_released_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When the closed drop's Redis keys were deleted."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["starts_at", "pk"]
        constraints = [
            models.CheckConstraint(condition=Q(sold__lte=F("quantity")), name="drop_sold_lte_quantity"),
            models.CheckConstraint(condition=Q(prequeue_opens_at__lte=F("starts_at")), name="drop_prequeue_first"),
        ]

    def __str__(self) -> str:
        return self.slug

    @property
    def title(self) -> str:
        return self.product.title

    def closed(self, now: datetime | None = None) -> bool:
        """Over by the database's figures: ended, or every unit in an order (pending ones count)."""
        return self.state_at(now) in (DropState.ENDED, DropState.SOLD_OUT)

    def state_at(self, now: datetime | None = None, *, remaining: int | None = None) -> DropState:
        """Return the state at ``now`` given the unsold units (database figure when not given)."""
        now = now or timezone.now()
        left = self.quantity - self.sold if remaining is None else remaining
        if self.ends_at is not None and now >= self.ends_at:
            return DropState.ENDED
        if left <= 0:
            return DropState.SOLD_OUT
        if now >= self.starts_at:
            return DropState.PAUSED if self.paused else DropState.LIVE
        if now >= self.prequeue_opens_at:
            return DropState.PREQUEUE
        return DropState.SCHEDULED


class OrderStatus(models.TextChoices):
    PENDING = "pending"  # units reserved in the database, payment not yet captured
    PAID = "paid"
    FAILED = "failed"
    REFUNDED = "refunded"


class Order(models.Model):
    drop = models.ForeignKey(Drop, on_delete=models.PROTECT, related_name="orders")
    shopper = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="orders")
    status = models.CharField(max_length=16, choices=OrderStatus.choices, default=OrderStatus.PENDING)
    quantity = models.PositiveSmallIntegerField(validators=[MinValueValidator(1)])
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    claim_id = models.CharField(max_length=64, unique=True, help_text="The Redis hold this order turned into.")
    idempotency_key = models.CharField(max_length=255, blank=True)
    failure_code = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            # One live purchase per shopper and drop: the per-customer limit holds in the database too.
            models.UniqueConstraint(
                fields=["drop", "shopper"],
                condition=Q(status__in=["pending", "paid"]),
                name="order_one_live_per_shopper_drop",
            ),
        ]
        indexes = [models.Index(fields=["drop", "status"])]

    def __str__(self) -> str:
        return f"order {self.pk} ({self.drop_id}, {self.status})"
