"""Helpers both providers use to read received mail: header parsing and concurrent fetching."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from email.utils import getaddresses
from typing import TypeVar

from django.conf import settings

from crm.providers.base import MAX_RAW_BODY_CHARS

logger = logging.getLogger("crm.providers")

T = TypeVar("T")
R = TypeVar("R")

_MESSAGE_ID = re.compile(r"<([^<>\s]{1,500})>")


def message_ids(*values: str | None) -> tuple[str, ...]:
    """The Message-IDs (without angle brackets) named in In-Reply-To / References headers."""
    found: list[str] = []
    for value in values:
        for message_id in _MESSAGE_ID.findall(value or ""):
            if message_id not in found:
                found.append(message_id)
    return tuple(found[:100])


def bare_message_id(value: str | None) -> str:
    """A Message-ID header's id without angle brackets ("" when there is none)."""
    ids = message_ids(value)
    if ids:
        return ids[0]
    return (value or "").strip().strip("<>")[:500]


def addresses(*values: str | None) -> list[tuple[str, str]]:
    """(name, lower-cased address) pairs of address headers; junk without an @ is dropped."""
    result = []
    for name, address in getaddresses([value for value in values if value]):
        address = clean_address(address)
        if address:
            result.append((name.strip()[:200], address))
    return result


def clean_address(value: object) -> str:
    """A lower-cased addr-spec, or "" for anything that cannot be one (no @, spaces, control characters)."""
    address = str(value or "").strip().lower()
    if "@" not in address or len(address) > 254 or any(ch.isspace() or ord(ch) < 32 or ch == "\x7f" for ch in address):
        return ""
    return address


def cut(text: str) -> str:
    return text[:MAX_RAW_BODY_CHARS]


def fetch_all(fetch: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """`fetch` every item, EMAIL_SYNC_FETCH_CONCURRENCY at a time, in order; the first error raises."""
    items = list(items)
    workers = min(settings.EMAIL_SYNC_FETCH_CONCURRENCY, len(items))
    if workers <= 1:
        return [fetch(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mail-fetch") as pool:
        return list(pool.map(fetch, items))


def parse_or_skip(parse: Callable[..., R], resource: dict, **kwargs) -> R | None:
    """`parse(resource)`, or None (logged by id, never by content) when the provider's resource is
    malformed: one unreadable message must not stop its mailbox's sync at that page for ever."""
    try:
        return parse(resource, **kwargs)
    except Exception as exc:  # assorted errors of malformed MIME, base64 or dates
        logger.warning("Skipped unreadable message %s (%s)", str(resource.get("id"))[:100], type(exc).__name__)
        return None
