"""The one place where payment key names are built (same per-drop hash tag as the inventory)."""

from django.conf import settings

from inventory.redis_keys import drop_tag


def authorized_key(drop_id: int) -> str:
    """Set of shopper ids holding an ``authorized`` card hold for the drop (read by the queue join script)."""
    return f"{drop_tag(drop_id)}:authorized"


def stripe_bucket_key() -> str:
    """Token bucket shared by every process that calls Stripe."""
    return f"{settings.FLASHSALE_REDIS_PREFIX}:stripe:bucket"
