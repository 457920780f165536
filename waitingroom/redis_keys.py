"""The one place where waiting-room key names are built (same per-drop hash tag as the inventory)."""

from __future__ import annotations

from dataclasses import dataclass

from flashsale.redis import pubsub_namespace
from inventory.redis_keys import drop_tag


@dataclass(frozen=True)
class QueueKeys:
    entries: str  # hash shopper id -> ticket (0 while in the pre-queue)
    tickets: str  # hash ticket -> shopper id
    prequeue: str  # list of shopper ids in the pre-queue, in arrival order
    started: str  # set once the pre-queue has been shuffled into tickets
    last_ticket: str  # highest ticket issued
    serving: str  # highest ticket admitted
    admitted: str  # sorted set shopper id -> admission expiry (ms): admitted and not finished
    outcome: str  # hash shopper id -> "purchased" | "expired"
    tick: str  # hash: last (ms of the last admission tick), carry (fraction), rate (measured, per s)
    pow_spent: str  # prefix: + challenge signature, set once a proof-of-work was used
    device: str  # prefix: + device fingerprint -> set of shopper ids seen on that device
    parked: str  # hash shopper id -> reasons: entries parked in the queue that is never admitted
    blocked: str  # hash reason -> joins refused for it
    flagged: str  # hash reason -> entries parked for it
    holds: str  # hash shopper id -> hold state (see HoldState): who gave a card, and whether its hold is placed
    deferred: str  # sorted set shopper id -> ticket: passed by admission while their hold was not ready
    journal: str  # list of "shopper:ticket" entries not yet saved to the database
    persist_lock: str  # held while one process saves the journal


def queue_keys(drop_id: int) -> QueueKeys:
    tag = drop_tag(drop_id)
    return QueueKeys(
        entries=f"{tag}:q:entries",
        tickets=f"{tag}:q:tickets",
        prequeue=f"{tag}:q:prequeue",
        started=f"{tag}:q:started",
        last_ticket=f"{tag}:q:last_ticket",
        serving=f"{tag}:q:serving",
        admitted=f"{tag}:q:admitted",
        outcome=f"{tag}:q:outcome",
        tick=f"{tag}:q:tick",
        pow_spent=f"{tag}:pow:",
        device=f"{tag}:dev:",
        parked=f"{tag}:q:parked",
        blocked=f"{tag}:bots:blocked",
        flagged=f"{tag}:bots:flagged",
        holds=f"{tag}:q:holds",
        deferred=f"{tag}:q:deferred",
        journal=f"{tag}:q:journal",
        persist_lock=f"{tag}:q:persist_lock",
    )


def updates_channel(drop_id: int) -> str:
    """Pub/sub channel on which a drop's websocket frames are published."""
    return f"{pubsub_namespace()}:ws:{drop_id}"


def updates_pattern() -> str:
    return f"{pubsub_namespace()}:ws:*"
