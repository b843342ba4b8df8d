"""Reading the change feed (`axiomatic_change`): event types, the change object, cursors.

Why reading by `seq` never skips nor repeats: `seq` is given at COMMIT under the entity's counter
row lock (migration `axiomatic.0005_change_feed`), so when a reader sees change n, every change
before n is visible too, and the numbers have no gaps. A page is read below a bound taken first
(`max_visible_seq`, the highest number visible then): everything up to it is visible for good,
so the cursor can move to the bound even when the types filter matched nothing there.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import orjson
from django.conf import settings
from django.core import signing
from django.db.models import Max, Q

from axiomatic import changes as feed
from axiomatic.models import Change, EntityCounter
from axiomatic.timestamps import iso_utc

TEST_EVENT_TYPE = "webhook.test"
MAX_PATTERNS = 50
_PATTERN = re.compile(r"^[a-z_*]+(\.[a-z_*]+)?$|^\*$")
CURSOR_LATEST = "latest"
# The largest seq a client may name (`fromSeq` of a replay): far above any feed, inside bigint.
MAX_SEQ = 2**62
_WHOLE_NUMBER = re.compile(r"[0-9]{1,19}")  # ASCII digits, as in JSON; 19 digits pass MAX_SEQ


class FeedError(ValueError):
    """A bad `types` or cursor (400), or a cursor past retention (`gone`: 410)."""

    def __init__(self, message: str, *, field: str, gone: bool = False):
        super().__init__(message)
        self.message, self.field, self.gone = message, field, gone


def whole_number(text: str, *, minimum: int, maximum: int) -> int | None:
    """`text` (surrounding spaces aside) as an integer from `minimum` to `maximum`, or None.

    Written as the API reads numbers: ASCII digits only, as in a JSON number. Python's `int()`
    would also take other scripts' digits (Arabic-Indic "٣", fullwidth "３") and `str.isdigit()`
    even characters `int()` refuses ("²"); one rule for the API's text parameters and the
    settings page keeps them answering alike, with a 400 for anything else, never a 500.
    """
    text = text.strip()
    if not _WHOLE_NUMBER.fullmatch(text):
        return None
    value = int(text)
    return value if minimum <= value <= maximum else None


# --- event types ------------------------------------------------------------------------------------


def _regex(pattern: str) -> str:
    return "^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$"


def parse_patterns(value, *, field: str) -> list[str]:
    """Event type patterns (`lead.*`, `*.deleted`, `contact.created`, `*`) as a clean list; each
    must match at least one event type of the catalogue."""
    patterns = [p.strip() for p in value.split(",")] if isinstance(value, str) else list(value or [])
    if any(not isinstance(p, str) for p in patterns):
        raise FeedError("Event types are strings such as lead.* or contact.created.", field=field)
    patterns = list(dict.fromkeys(p.strip() for p in patterns if p.strip()))
    if len(patterns) > MAX_PATTERNS:
        raise FeedError(f"At most {MAX_PATTERNS} event type patterns.", field=field)
    for pattern in patterns:
        if len(pattern) > 64 or not _PATTERN.match(pattern):
            raise FeedError(f"{pattern!r} is not an event type pattern such as lead.* or contact.created.", field=field)
        regex = re.compile(_regex(pattern))
        if not any(regex.match(name) for name in (*feed.event_types(), TEST_EVENT_TYPE)):
            raise FeedError(f"{pattern!r} matches no event type.", field=field)
    return patterns


def matches(patterns: list[str], event_type: str) -> bool:
    return not patterns or any(re.match(_regex(p), event_type) for p in patterns)


def types_filter(patterns: list[str]) -> Q:
    """The changes whose type matches one of `patterns` (all of them for none or `*`)."""
    if not patterns or "*" in patterns:
        return Q()
    condition = Q(pk__in=[])
    for pattern in patterns:
        if "*" not in pattern:
            condition |= Q(type=pattern)
        elif pattern.endswith(".*") and "*" not in pattern[:-2]:
            condition |= Q(object_type=pattern[:-2])
        else:
            condition |= Q(type__regex=_regex(pattern))
    return condition


# --- the change object ------------------------------------------------------------------------------


def _envelope(change: Change, data, previous) -> dict:
    return {
        "id": change.event_id,
        "seq": change.seq,
        "type": change.type,
        "objectType": change.object_type,
        "objectId": change.object_id,
        "occurredAt": iso_utc(change.occurred_at),
        "actor": {"type": change.actor_type, "id": change.actor_id},
        "data": data,
        "previous": previous,
    }


def change_object(change: Change) -> dict:
    """The change as the feed answers it (parsed `data` / `previous`)."""
    previous = orjson.loads(change.previous) if change.previous is not None else None
    return _envelope(change, orjson.loads(change.data), previous)


def change_body(change: Change) -> bytes:
    """The change as a webhook body: the same object, `data`/`previous` spliced in as stored."""
    previous = orjson.Fragment(change.previous) if change.previous is not None else None
    return orjson.dumps(_envelope(change, orjson.Fragment(change.data), previous))


# --- reading ----------------------------------------------------------------------------------------


def max_visible_seq(entity_id) -> int:
    """The highest `seq` this statement sees in the entity (0 for none)."""
    return Change.objects.filter(entity_id=entity_id).aggregate(top=Max("seq"))["top"] or 0


def pruned_through(entity_id) -> int:
    """The highest `seq` retention removed (0 for none): cursors before it would skip changes."""
    value = (
        EntityCounter.objects.filter(entity_id=entity_id, name=feed.PRUNED_COUNTER)
        .values_list("value", flat=True)
        .first()
    )
    return int(value or 0)


@dataclass
class Page:
    changes: list[Change]
    next_seq: int
    has_more: bool


def read(entity_id, *, after: int, patterns: list[str], limit: int) -> Page:
    """The first `limit` matching changes after `after`, and where the next read starts."""
    bound = max_visible_seq(entity_id)
    if bound <= after:
        return Page([], after, False)
    rows = list(
        Change.objects.filter(entity_id=entity_id, seq__gt=after, seq__lte=bound)
        .filter(types_filter(patterns))
        .order_by("seq")[: limit + 1]
    )
    has_more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, rows[-1].seq if has_more else bound, has_more)


def next_for(entity_id, *, after: int, patterns: list[str]) -> tuple[Change | None, int]:
    """The next matching change after `after` (or None) and the bound read below."""
    page = read(entity_id, after=after, patterns=patterns, limit=1)
    return (page.changes[0] if page.changes else None), page.next_seq


# --- cursors ----------------------------------------------------------------------------------------


def _signer(entity_id) -> signing.Signer:
    return signing.Signer(salt=f"axiomatic.changes.cursor:{entity_id}")


def cursor_encode(entity_id, seq: int) -> str:
    return _signer(entity_id).sign(f"{int(seq)}.{int(time.time())}")


def retention_seconds() -> float:
    return float(getattr(settings, "CHANGES_RETENTION_DAYS", 35)) * 86400


def cursor_decode(entity_id, cursor: str) -> int:
    """The position a cursor names; 400 for a forged or foreign one, 410 past retention."""
    if cursor == CURSOR_LATEST:
        return max_visible_seq(entity_id)
    try:
        seq_text, issued_text = _signer(entity_id).unsign(cursor).split(".", 1)
        seq, issued = int(seq_text), int(issued_text)
    except (signing.BadSignature, ValueError):
        raise FeedError("Malformed cursor: send back a nextCursor as given (or latest).", field="cursor") from None
    if time.time() - issued > retention_seconds() or seq < pruned_through(entity_id):
        raise FeedError(
            "This cursor is older than the changes kept (CHANGES_RETENTION_DAYS); start again from cursor=latest "
            "after listing the objects.",
            field="cursor",
            gone=True,
        )
    return seq
