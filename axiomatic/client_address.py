"""The client's address, for the limits that count per address (sign-in lock-out, failed API auth).

Without a proxy it is `REMOTE_ADDR`. Behind `TRUSTED_PROXY_COUNT` reverse proxies, each of which
appends the address it received the request from to `X-Forwarded-For`, the client is the entry
that many places from the right: entries further left were written by the client itself and
prove nothing. A value that is not an IP address is ignored (it would also not fit the
sign-in records' address column).
"""

from __future__ import annotations

import ipaddress

from django.conf import settings


def _valid(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip()
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def client_address(request) -> str | None:
    """The address the limits count against; None when the request carries none (e.g. a shell)."""
    meta = getattr(request, "META", {})
    proxies = getattr(settings, "TRUSTED_PROXY_COUNT", 0)
    if proxies > 0:
        forwarded = [part.strip() for part in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if forwarded:
            chosen = _valid(forwarded[-proxies] if len(forwarded) >= proxies else forwarded[0])
            if chosen:
                return chosen
    return _valid(meta.get("REMOTE_ADDR"))
