"""Routes of the payments app (orders, Stripe webhook)."""

from django.urls import path

from . import api, views

app_name = "payments"

urlpatterns = [
    path("api/orders", api.orders, name="orders"),
    path("orders/", views.orders_page, name="orders_page"),
    path("orders/<int:order_id>/", views.order_page, name="order_page"),
]
