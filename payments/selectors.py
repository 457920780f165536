"""Reads of payment state."""

from django.db.models import Count

from .models import Authorization, AuthorizationStatus


def authorization_counts(*, drop_id: int) -> dict[str, int]:
    """Return the number of the drop's authorizations in each status (every status present)."""
    counts = dict(Authorization.objects.filter(drop_id=drop_id).values_list("status").annotate(n=Count("pk")))
    return {status.value: counts.get(status.value, 0) for status in AuthorizationStatus}
