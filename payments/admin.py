"""Admin for merchandisers: card holds (read-only, no secrets), refunds, and a refund action on orders."""

from __future__ import annotations

from django.contrib import admin, messages

from inventory.admin import OrderAdmin
from inventory.models import Order

from . import services
from .errors import PaymentError
from .models import Authorization, Refund, StripeCustomer, StripeEvent


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Authorization)
class AuthorizationAdmin(ReadOnlyAdmin):
    # The client secret is never stored, so it cannot show here.
    list_display = ["pk", "drop", "shopper", "status", "amount", "currency", "card_brand", "card_last4", "created_at"]
    list_filter = ["status", "drop"]
    search_fields = ["shopper__username", "payment_intent_id"]
    list_select_related = ["drop", "shopper"]
    # The card's fingerprint identifies the card across merchants' accounts: it stays out of sight.
    exclude = ["card_fingerprint"]
    readonly_fields = [f.name for f in Authorization._meta.fields if f.name != "card_fingerprint"]
    actions = ["cancel_holds"]

    @admin.action(description="Cancel the selected card holds at Stripe (in the background)", permissions=["cancel"])
    def cancel_holds(self, request, queryset) -> None:
        scheduled = sum(
            services.authorization_cancel_for_shopper(drop_id=a.drop_id, shopper_id=a.shopper_id) for a in queryset
        )
        self.message_user(request, f"Scheduled the cancellation of {scheduled} open hold(s).")

    def has_cancel_permission(self, request) -> bool:
        return request.user.has_perm("payments.issue_refund")


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ["refund_id", "order", "amount", "currency", "status", "restocked", "created_at"]
    list_filter = ["restocked", "status"]
    readonly_fields = [f.name for f in Refund._meta.fields]
    actions = ["restock"]

    @admin.action(description="Put the refunded units back on sale", permissions=["restock"])
    def restock(self, request, queryset) -> None:
        done = sum(services.refund_restock(refund=refund) for refund in queryset)
        self.message_user(request, f"Put the units of {done} refund(s) back on sale.")

    def has_restock_permission(self, request) -> bool:
        return request.user.has_perm("payments.restock_refund")


@admin.register(StripeCustomer)
class StripeCustomerAdmin(ReadOnlyAdmin):
    list_display = ["shopper", "customer_id", "created_at"]
    search_fields = ["shopper__username", "customer_id"]


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ["event_id", "type", "received_at"]
    list_filter = ["type"]
    search_fields = ["event_id"]


class OrderWithRefundAdmin(OrderAdmin):
    """The inventory's order admin plus a refund through Stripe (the units stay sold)."""

    actions = [*OrderAdmin.actions, "refund_orders"] if OrderAdmin.actions else ["refund_orders"]

    @admin.action(description="Refund the selected paid orders through Stripe", permissions=["refund"])
    def refund_orders(self, request, queryset) -> None:
        refunded = 0
        for order in queryset:
            try:
                services.order_refund(order=order)
            except PaymentError as exc:
                self.message_user(request, f"Order {order.pk}: {exc.message}", messages.ERROR)
            else:
                refunded += 1
        self.message_user(request, f"Refunded {refunded} order(s). Their units stay sold until put back on sale.")

    def has_refund_permission(self, request) -> bool:
        return request.user.has_perm("payments.issue_refund")


admin.site.unregister(Order)
admin.site.register(Order, OrderWithRefundAdmin)
