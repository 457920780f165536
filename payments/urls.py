"""Routes of the payments app (authorization, purchase, orders, Stripe webhook)."""

urlpatterns: list = []
