"""The one place where the checkout's own Redis key names are built (same per-drop hash tag as the inventory)."""

from inventory.redis_keys import drop_tag


def holds_lock_key(drop_id: int) -> str:
    """Held by the one hold scheduler run at work on a drop."""
    return f"{drop_tag(drop_id)}:checkout:holds_lock"


def recover_lock_key(drop_id: int) -> str:
    """Held while one process rebuilds the drop's Redis state from the database."""
    return f"{drop_tag(drop_id)}:checkout:recover_lock"
