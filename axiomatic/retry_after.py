"""`Retry-After`, as the mailbox providers and webhook receivers send it: one reading for both."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime


def parse_retry_after(value: str | None, *, cap: float) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP date, never below 0
    and at most `cap` (a receiver may not park a retry for ever); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), float(cap))
