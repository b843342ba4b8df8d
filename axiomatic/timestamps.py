"""The one textual form of a timestamp (ISO 8601 in UTC with a `Z` suffix).

`YYYY-MM-DDTHH:MM:SS.ffffffZ`, RFC 3339: the year always has four digits. `strftime("%Y")` does
not promise that (glibc prints the year 354 as `354`), so nothing should format timestamps with it.
Timestamps before the year 1000 are refused on input by the API (`ApiDateTimeField`).
"""

from __future__ import annotations

from datetime import UTC, datetime

MIN_YEAR = 1000


def iso_utc(value: datetime | None) -> str | None:
    """`value` (aware; a naive value is taken as UTC) as `YYYY-MM-DDTHH:MM:SS.ffffffZ`."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds") + "Z"
