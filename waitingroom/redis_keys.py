"""The one place where waiting-room key names are built (same per-drop hash tag as the inventory)."""

from __future__ import annotations

from dataclasses import dataclass

from inventory.redis_keys import drop_tag


@dataclass(frozen=True)
class QueueKeys:
    entries: str  # hash shopper id -> ticket (0 while in the pre-queue)
    prequeue: str  # list of shopper ids in the pre-queue, in arrival order
    last_ticket: str  # highest ticket issued
    serving: str  # highest ticket admitted
    admitted: str  # sorted set shopper id -> admission expiry (ms)


def queue_keys(drop_id: int) -> QueueKeys:
    tag = drop_tag(drop_id)
    return QueueKeys(
        entries=f"{tag}:q:entries",
        prequeue=f"{tag}:q:prequeue",
        last_ticket=f"{tag}:q:last_ticket",
        serving=f"{tag}:q:serving",
        admitted=f"{tag}:q:admitted",
    )
