"""The one place where payment key names are built (same per-drop hash tag as the inventory)."""

from django.conf import settings

from inventory.redis_keys import drop_tag


def client_secret_key(authorization_id: int) -> str:
    """Cache key of the client secret of a hold waiting for 3-D Secure."""
    return f"pay:client_secret:{authorization_id}"


def stripe_bucket_key() -> str:
    """Token bucket shared by every process that calls Stripe."""
    return f"{settings.FLASHSALE_REDIS_PREFIX}:stripe:bucket"


def shopper_lock_key(drop_id: int, shopper_id: int, purpose: str) -> str:
    """Short lock for one shopper's authorization or purchase on one drop."""
    return f"{drop_tag(drop_id)}:lock:{purpose}:{shopper_id}"


def cancel_chain_lock_key(drop_id: int) -> str:
    """Lock held by the one task cancelling a drop's leftover authorizations."""
    return f"{drop_tag(drop_id)}:cancel_chain"
