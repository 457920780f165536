"""Admin for merchandisers: schedule drops, watch their state and stock, pause, resume, end."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from . import selectors, services
from .errors import InventoryError
from .models import Drop, Order, Product


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["title", "sku", "price", "currency"]
    search_fields = ["title", "sku"]


class DropForm(forms.ModelForm):
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
            "checkout_window",
            "paused",
        ]

    def clean(self):
        data = super().clean()
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


@admin.register(Drop)
class DropAdmin(admin.ModelAdmin):
    form = DropForm
    list_display = [
        "slug",
        "product",
        "state",
        "remaining",
        "quantity",
        "sold",
        "prequeue_opens_at",
        "starts_at",
        "ends_at",
        "paused",
        "is_draft",
    ]
    list_filter = ["paused", "is_draft"]
    search_fields = ["slug", "product__title"]
    readonly_fields = ["sold", "armed_at", "redis_released_at", "created_at"]
    actions = ["pause_drops", "resume_drops", "end_drops", "reconcile_drops"]
    list_select_related = ["product"]

    @admin.display(description="state")
    def state(self, drop: Drop) -> str:
        return selectors.drop_state_get(drop=drop).value

    @admin.display(description="remaining")
    def remaining(self, drop: Drop) -> int:
        return selectors.stock_get(drop=drop).remaining

    def save_model(self, request, obj: Drop, form, change: bool) -> None:
        if not change:
            super().save_model(request, obj, form, change)
            services.drop_arm(drop=obj)
            return
        new_quantity = obj.quantity
        obj.quantity = Drop.objects.values_list("quantity", flat=True).get(pk=obj.pk)
        super().save_model(request, obj, form, change)
        if new_quantity != obj.quantity:
            try:
                services.drop_quantity_set(drop=obj, quantity=new_quantity)
            except InventoryError as exc:
                self.message_user(request, f"Quantity not changed: {exc.message}", messages.ERROR)
            else:
                obj.quantity = new_quantity

    @admin.action(description="Pause the selected drops", permissions=["change"])
    def pause_drops(self, request, queryset) -> None:
        for drop in queryset:
            services.drop_pause(drop=drop)
        self.message_user(request, f"Paused {len(queryset)} drop(s).")

    @admin.action(description="Resume the selected drops", permissions=["change"])
    def resume_drops(self, request, queryset) -> None:
        for drop in queryset:
            services.drop_resume(drop=drop)
        self.message_user(request, f"Resumed {len(queryset)} drop(s).")

    @admin.action(description="End the selected drops now", permissions=["change"])
    def end_drops(self, request, queryset) -> None:
        for drop in queryset:
            services.drop_end(drop=drop)
        self.message_user(request, f"Ended {len(queryset)} drop(s).")

    @admin.action(description="Rebuild the Redis stock from the database", permissions=["change"])
    def reconcile_drops(self, request, queryset) -> None:
        for drop in queryset:
            result = services.inventory_rebuild(drop=drop)
            self.message_user(request, f"{drop.slug}: stock {result.stock}, sold {result.sold}, held {result.held}.")


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["pk", "drop", "shopper", "status", "quantity", "amount", "currency", "created_at"]
    list_filter = ["status", "drop"]
    search_fields = ["shopper__username", "claim_id"]
    readonly_fields = [f.name for f in Order._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
