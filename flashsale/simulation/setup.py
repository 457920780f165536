"""What the simulation prepares in the server's Django environment before the first shopper arrives.

Only set-up happens here (the drop, the accounts, their sessions); every step a shopper takes
goes over HTTP or the websocket.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from decimal import Decimal
from importlib import import_module

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.models import Session
from django.utils import timezone
from django.utils.crypto import get_random_string

from inventory.models import Drop
from inventory.services import drop_schedule
from waitingroom.services import shoppers_create_bulk
from waitingroom.signals import JOINED_AT_SESSION_KEY

from .config import SHOPPER_PASSWORD, Role, ShopperPlan, SimulationConfig

BATCH = 5_000
ACCOUNT_AGE = timedelta(days=30)
SESSION_DAYS = 1
PRICE = Decimal("129.00")


def drop_slug(config: SimulationConfig, now: datetime) -> str:
    return config.slug or f"sim-{now:%Y%m%d-%H%M%S}"


def simulation_drop_schedule(*, config: SimulationConfig, starts_at: datetime, now: datetime) -> Drop:
    """Schedule the simulated drop: the pre-queue opens now, admission starts at ``starts_at``."""
    drop = drop_schedule(
        slug=drop_slug(config, now),
        title=f"Simulated drop ({config.shoppers:,} shoppers for {config.units:,} units)",
        price=PRICE,
        quantity=config.units,
        starts_at=starts_at,
        prequeue_opens_at=now,
        admission_rate=config.rate,
        per_customer_limit=1,
        checkout_window=config.checkout_window,
        # Stripe's test cards (pm_card_visa...) all share one card fingerprint.
        max_accounts_per_card=config.accounts_per_card or config.shoppers,
    )
    if drop.admitted_cap_multiple != config.cap_multiple:
        drop.admitted_cap_multiple = config.cap_multiple
        drop.save(update_fields=["admitted_cap_multiple"])
    return drop


def simulation_shoppers_create(*, config: SimulationConfig, plans: list[ShopperPlan]) -> list[ShopperPlan]:
    """Create the accounts (bulk; existing ones are reused) and return the plans, with sessions if asked.

    People's accounts are made a month old, as most accounts are on the day of a drop; the bots'
    accounts stay as new as they are.
    """
    humans = sum(1 for plan in plans if plan.role is not Role.BOT)
    shoppers_create_bulk(count=humans, prefix=config.prefix, password=SHOPPER_PASSWORD)
    shoppers_create_bulk(count=len(plans) - humans, prefix=f"{config.prefix}bot", password=SHOPPER_PASSWORD)
    User = get_user_model()
    now = timezone.now()
    names = [plan.username for plan in plans if plan.role is not Role.BOT]
    for start in range(0, len(names), BATCH):
        User.objects.filter(username__in=names[start : start + BATCH], date_joined__gt=now - ACCOUNT_AGE).update(
            date_joined=now - ACCOUNT_AGE
        )
    if config.sign_in != "session":
        return plans
    keys = _sessions_create([plan.username for plan in plans])
    return [dataclasses.replace(plan, session_key=keys[plan.username]) for plan in plans]


def _sessions_create(usernames: list[str]) -> dict[str, str]:
    """Write a signed-in session per shopper straight into the session table, as ``login()`` would leave it.

    This skips the password hash per sign-in (PBKDF2: a good part of a CPU second each), which
    would otherwise be most of the server's work in a large run.
    """
    User = get_user_model()
    store = import_module(settings.SESSION_ENGINE).SessionStore()
    backend = settings.AUTHENTICATION_BACKENDS[0]
    expires = timezone.now() + timedelta(days=SESSION_DAYS)
    keys: dict[str, str] = {}
    for start in range(0, len(usernames), BATCH):
        users = User.objects.filter(username__in=usernames[start : start + BATCH]).only(
            "pk", "username", "password", "date_joined"
        )
        rows = []
        for user in users:
            data = {
                SESSION_KEY: str(user.pk),
                BACKEND_SESSION_KEY: backend,
                HASH_SESSION_KEY: user.get_session_auth_hash(),
                JOINED_AT_SESSION_KEY: user.date_joined.timestamp(),
            }
            key = get_random_string(32)
            rows.append(Session(session_key=key, session_data=store.encode(data), expire_date=expires))
            keys[user.username] = key
        Session.objects.bulk_create(rows, batch_size=1_000)
    return keys
