"""The one clock of the store, the API and the workers: aware UTC datetimes."""

from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
