"""Writes of the waiting room: shoppers."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.db import transaction

BULK_BATCH = 5_000


def shoppers_create_bulk(*, count: int, prefix: str, password: str) -> int:
    """Create shoppers ``<prefix>0 .. <prefix>{count-1}`` in bulk; existing ones are left as they are.

    The password is hashed once and shared, which is what makes 100,000 accounts take seconds.
    Returns how many were created.
    """
    User = get_user_model()
    hashed = make_password(password)
    created = 0
    for start in range(0, count, BULK_BATCH):
        names = [f"{prefix}{i}" for i in range(start, min(start + BULK_BATCH, count))]
        with transaction.atomic():
            existing = set(User.objects.filter(username__in=names).values_list("username", flat=True))
            fresh = [User(username=name, password=hashed) for name in names if name not in existing]
            User.objects.bulk_create(fresh, batch_size=1_000, ignore_conflicts=True)
        created += len(fresh)
    return created
