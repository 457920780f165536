"""Formats of the API contract shared by every app."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_utc(value: datetime | None) -> str | None:
    """Return ISO 8601 in UTC with a Z and whole seconds (``2026-12-01T10:00:00Z``)."""
    if value is None:
        return None
    return value.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
