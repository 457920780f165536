"""Admin for merchandisers: schedule drops, watch their state and stock, pause, resume, end."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.humanize.templatetags.humanize import naturaltime
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html

from . import selectors, services
from .errors import InventoryError
from .forms import DropForm
from .models import Drop, DropState, Order, Product
from .selectors import StockSnapshot

# A drop's state as a merchandiser says it.
STATE_WORDS = {
    DropState.SCHEDULED: "Scheduled",
    DropState.PREQUEUE: "Pre-queue open",
    DropState.LIVE: "Live",
    DropState.PAUSED: "Paused",
    DropState.SOLD_OUT: "Sold out",
    DropState.ENDED: "Ended",
}


def moment_words(moment) -> str:
    """A moment as people say it ("3 minutes ago", "in 2 hours"), the date and time in the shop's zone under it."""
    if moment is None:
        return "-"
    relative = naturaltime(moment)
    if relative.endswith(" from now"):
        relative = "in " + relative.removesuffix(" from now")
    return format_html(
        '{}<br><time class="moment" datetime="{}">{}</time>',
        relative,
        moment.isoformat(),
        date_format(timezone.localtime(moment), "j M Y, H:i T"),
    )


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["title", "sku", "price", "currency"]
    search_fields = ["title", "sku"]


@admin.register(Drop)
class DropAdmin(admin.ModelAdmin):
    form = DropForm
    list_display = ["slug", "product", "state", "remaining", "starts", "dashboard"]
    # No filter sidebar: the state column says paused and draft, and the list keeps its width at 1280 px.
    search_fields = ["slug", "product__title"]
    readonly_fields = ["sold", "armed_at", "redis_released_at", "created_at"]
    actions = ["pause_drops", "resume_drops", "end_drops", "reconcile_drops"]
    list_select_related = ["product"]
    fieldsets = [
        (
            "What and when",
            {
                "description": "The product on sale and the drop's timetable, in the shop's time zone.",
                "fields": ["slug", "product", "is_draft", "prequeue_opens_at", "starts_at", "ends_at"],
            },
        ),
        (
            "Stock",
            {
                "description": "How many units are on sale and how many one shopper may buy.",
                "fields": ["quantity", "per_customer_limit"],
            },
        ),
        (
            "Queue and checkout",
            {
                "description": "How fast shoppers are let out of the queue and how long they have to buy. "
                "The defaults are those of schedule_drop: 500 a second, at most 3 times the free stock "
                "admitted at once, 300 seconds to buy.",
                "fields": ["admission_rate", "admitted_cap_multiple", "checkout_window", "paused"],
            },
        ),
        (
            "Bot protection",
            {
                "description": "Who may join the queue. A join that breaks a limit is refused and counted "
                "by reason in the waiting room and in /metrics.",
                "fields": [
                    "bot_threshold",
                    "bot_action",
                    "max_accounts_per_device",
                    "max_accounts_per_card",
                    "min_account_age",
                ],
            },
        ),
    ]
    record_fieldset = (
        "Record",
        {
            "description": "Kept by the system: units in orders, when the stock was loaded into Redis.",
            "classes": ["collapse"],
            "fields": ["sold", "armed_at", "redis_released_at", "created_at"],
        },
    )

    class Media:
        css = {"all": ["css/admin-dashboard.css"]}

    def get_fieldsets(self, request, obj=None):
        return [*self.fieldsets, self.record_fieldset] if obj is not None else self.fieldsets

    def _stock(self, drop: Drop) -> StockSnapshot:
        # One read of Redis and the database per row, shared by its columns.
        if not hasattr(drop, "_admin_stock"):
            drop._admin_stock = selectors.stock_get(drop=drop)
        return drop._admin_stock

    def _state(self, drop: Drop) -> DropState:
        return selectors.drop_state_get(drop=drop, stock=self._stock(drop))

    @admin.display(description="state")
    def state(self, drop: Drop) -> str:
        words = STATE_WORDS[self._state(drop)]
        return f"{words} (draft, hidden)" if drop.is_draft else words

    @admin.display(description="remaining")
    def remaining(self, drop: Drop) -> str:
        return f"{self._stock(drop).remaining} of {drop.quantity}"

    @admin.display(description="starts", ordering="starts_at")
    def starts(self, drop: Drop) -> str:
        return moment_words(drop.starts_at)

    @admin.display(description="live dashboard")
    def dashboard(self, drop: Drop) -> str:
        try:
            url = reverse("admin:waitingroom_dropqueue_dashboard", args=[drop.pk])
        except NoReverseMatch:  # the waiting room's admin is not installed
            return "-"
        return format_html('<a href="{}">Dashboard: {}</a>', url, STATE_WORDS[self._state(drop)].lower())

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
