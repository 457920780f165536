"""The one place where inventory key names are built.

Every key of a drop carries the hash tag ``{drop:<id>}`` so that all of one drop's
scripts touch a single Redis Cluster slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver


@lru_cache(maxsize=4096)
def drop_tag(drop_id: int) -> str:
    """Return the key prefix (with its cluster hash tag) shared by one drop's keys (kept: a join names
    several keys, and each settings read costs a lazy-object lookup)."""
    return f"{settings.FLASHSALE_REDIS_PREFIX}:{{drop:{drop_id}}}"


@receiver(setting_changed)
def _prefix_changed(*, setting: str, **kwargs) -> None:
    if setting == "FLASHSALE_REDIS_PREFIX":
        drop_tag.cache_clear()


@dataclass(frozen=True)
class InventoryKeys:
    stock: str  # units free to claim
    sold: str  # units committed (paid)
    holds: str  # hash claim id -> "shopper:quantity"
    expiry: str  # sorted set claim id -> hold expiry (ms since epoch, Redis clock)
    customers: str  # hash shopper id -> units held or sold
    committed: str  # set of committed claim ids, so a repeated commit is a no-op
    meta: str  # hash: quantity

    def as_list(self) -> list[str]:
        return [self.stock, self.sold, self.holds, self.expiry, self.customers, self.committed, self.meta]


def inventory_keys(drop_id: int) -> InventoryKeys:
    tag = drop_tag(drop_id)
    return InventoryKeys(
        stock=f"{tag}:stock",
        sold=f"{tag}:sold",
        holds=f"{tag}:holds",
        expiry=f"{tag}:hold_expiry",
        customers=f"{tag}:customers",
        committed=f"{tag}:committed",
        meta=f"{tag}:meta",
    )
