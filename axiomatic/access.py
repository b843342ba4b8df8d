"""How a request presents its credential: `Authorization: Bearer <token>`, parsed in one way.

Which entity a request acts in, and through which membership, is decided by the one resolver in
`axiomatic.tenancy.resolve`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

BEARER = "bearer"


class MalformedAuthorization(ValueError):
    """An `Authorization` header that is not `Bearer <token>`."""


def bearer_token(meta: Mapping[str, Any]) -> str | None:
    """The token of `Authorization: Bearer <token>`; None without the header.

    Raises `MalformedAuthorization` for any other shape, which the API answers 401.
    """
    header = meta.get("HTTP_AUTHORIZATION")
    if not header:
        return None
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() != BEARER:
        raise MalformedAuthorization("Malformed Authorization header; use 'Bearer ak_...'.")
    return parts[1]


def credential_fingerprint(token: str) -> str:
    """A stable, non-secret name for a bearer credential (for cache keys, never for auth)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
