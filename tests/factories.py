"""factory_boy factories shared by the suite."""

from datetime import timedelta
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from inventory.models import Drop, Product


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"shopper{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("correct horse battery")


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    sku = factory.Sequence(lambda n: f"sku-{n}")
    title = factory.Sequence(lambda n: f"Sneaker {n}")
    price = Decimal("129.00")
    currency = "usd"


class DropFactory(factory.django.DjangoModelFactory):
    """A live drop (started a minute ago); arm it with ``inventory.services.drop_arm``."""

    class Meta:
        model = Drop

    slug = factory.Sequence(lambda n: f"drop-{n}")
    product = factory.SubFactory(ProductFactory)
    prequeue_opens_at = factory.LazyFunction(lambda: timezone.now() - timedelta(minutes=5))
    starts_at = factory.LazyFunction(lambda: timezone.now() - timedelta(minutes=1))
    quantity = 10
    per_customer_limit = 1
    admission_rate = 500
    checkout_window = 300
