"""Routes of the payments app (authorization, purchase, orders, Stripe webhook)."""

from django.urls import path

from . import api, views

app_name = "payments"

urlpatterns = [
    path("api/drops/<slug:slug>/authorization", api.authorization, name="authorization"),
    path("api/drops/<slug:slug>/purchase", api.purchase, name="purchase"),
    path("api/orders", api.orders, name="orders"),
    path("orders/", views.orders_page, name="orders_page"),
    path("payments/stripe/webhook", views.stripe_webhook, name="stripe_webhook"),
]
