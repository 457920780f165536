"""Routes of the checkout: the card step, the purchase, and the drop page that walks a shopper through both."""

from django.urls import path

from . import api, views

urlpatterns = [
    path("api/drops/<slug:slug>/authorization", api.authorization, name="api-authorization"),
    path("api/drops/<slug:slug>/purchase", api.purchase, name="api-purchase"),
    path("drops/<slug:slug>/", views.drop_page, name="drop-page"),
    path("payments/stripe/webhook", views.stripe_webhook, name="stripe-webhook"),
]
