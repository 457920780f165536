"""The merchandiser's drop form: every setting ``schedule_drop`` can set, checked by the same rules."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from . import selectors, services
from .errors import InventoryError
from .models import Drop

# What a merchandiser reads next to each field: what it does for shoppers, in plain words.
HELP_TEXTS = {
    "slug": "The drop's address in the shop: spring-sneakers is at /drops/spring-sneakers/. Letters, digits and "
    "hyphens.",
    "is_draft": "A draft is hidden from shoppers: nobody can see it or queue for it.",
    "prequeue_opens_at": "Shoppers may join the pre-queue from this moment; their order is drawn at random at the "
    "start. Leave empty to open the queue at the start (as schedule_drop does).",
    "starts_at": "The pre-queue is shuffled and admission begins.",
    "ends_at": "Sales stop at this moment. Leave empty to sell until the stock is gone.",
    "quantity": "Units on sale. Once the drop is armed, changing it moves the live stock by the difference; it "
    "cannot go below the units sold or held.",
    "per_customer_limit": "Units one shopper may buy.",
    "admission_rate": "Shoppers let out of the queue per second.",
    "admitted_cap_multiple": "At most this many times the free stock may be admitted and still buying at once "
    "(3: with 10 units free, at most 30 shoppers are checking out). Lower is fairer, higher sells faster.",
    "checkout_window": "Seconds an admitted shopper has to buy before their turn passes (at least 10).",
    "paused": "A paused drop admits nobody new; shoppers keep their places.",
    "bot_threshold": "Suspicion score at which a join counts as automated: a headless browser or automation tool "
    "scores 60, no user agent 40, no languages or an account under an hour old 20 each.",
    "bot_action": "What happens to a join that reaches the threshold: refused, or parked in a queue that is never "
    "admitted (you can release parked shoppers from the waiting room).",
    "max_accounts_per_device": "Accounts that may queue from one device (browser fingerprint).",
    "max_accounts_per_card": "Accounts that may queue with one card. Stripe's test cards all share one "
    "fingerprint, so a drop tried with them needs a high value.",
    "min_account_age": "Seconds an account must exist before it may join (0: no minimum; 86400: one day).",
}


class DropForm(forms.ModelForm):
    """A drop as ``inventory.services.drop_schedule`` makes it: the same defaults, the same validation."""

    class Meta:
        model = Drop
        fields = [
            "slug",
            "product",
            "is_draft",
            "prequeue_opens_at",
            "starts_at",
            "ends_at",
            "quantity",
            "per_customer_limit",
            "admission_rate",
            "admitted_cap_multiple",
            "checkout_window",
            "paused",
            "bot_threshold",
            "bot_action",
            "max_accounts_per_device",
            "max_accounts_per_card",
            "min_account_age",
        ]
        help_texts = HELP_TEXTS
        labels = {
            "prequeue_opens_at": "Pre-queue opens",
            "starts_at": "Starts",
            "ends_at": "Ends",
            "per_customer_limit": "Units per shopper",
            "admission_rate": "Admissions per second",
            "admitted_cap_multiple": "Admitted cap (times the free stock)",
            "checkout_window": "Checkout window (seconds)",
            "bot_threshold": "Bot threshold",
            "bot_action": "When a join looks automated",
            "max_accounts_per_device": "Accounts per device",
            "max_accounts_per_card": "Accounts per card",
            "min_account_age": "Minimum account age (seconds)",
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # As in drop_schedule: without a pre-queue the queue opens at the start.
        self.fields["prequeue_opens_at"].required = False
        # Admin splits a moment into a date and a time input; each needs a name of its own for screen readers.
        for name in ("prequeue_opens_at", "starts_at", "ends_at"):
            field = self.fields[name]
            for part, widget in zip(("date", "time"), getattr(field.widget, "widgets", ()), strict=False):
                widget.attrs["aria-label"] = f"{field.label}: {part}"

    def clean(self):
        data = super().clean()
        if data.get("starts_at") is not None and data.get("prequeue_opens_at") is None:
            data["prequeue_opens_at"] = data["starts_at"]
        required = (
            "prequeue_opens_at",
            "starts_at",
            "quantity",
            "per_customer_limit",
            "admission_rate",
            "checkout_window",
        )
        if any(data.get(name) is None for name in required):
            return data  # the field errors already say what is missing
        taken = 0
        if self.instance.pk:
            stock = selectors.stock_get(drop=self.instance)
            # Units sold or pending in the database, or held in Redis, cannot be taken back.
            taken = max(
                self.instance.quantity - stock.database,
                self.instance.quantity - stock.redis if stock.redis is not None else 0,
            )
        try:
            services.drop_validate(
                prequeue_opens_at=data["prequeue_opens_at"],
                starts_at=data["starts_at"],
                ends_at=data.get("ends_at"),
                quantity=data["quantity"],
                per_customer_limit=data["per_customer_limit"],
                admission_rate=data["admission_rate"],
                checkout_window=data["checkout_window"],
                sold=taken,
            )
        except InventoryError as exc:
            raise ValidationError(exc.message) from exc
        return data
