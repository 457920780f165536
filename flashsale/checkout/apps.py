from django.apps import AppConfig


class CheckoutConfig(AppConfig):
    name = "flashsale.checkout"
    label = "checkout"
    verbose_name = "Checkout"
