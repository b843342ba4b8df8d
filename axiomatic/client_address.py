"""The client's address, for the limits that count per address (sign-in lock-out, failed API auth).

Without a proxy it is `REMOTE_ADDR`. Behind `TRUSTED_PROXY_COUNT` reverse proxies, each of which
appends the address it received the request from to `X-Forwarded-For`, the client is the entry
that many places from the right: entries further left were written by the client itself and
prove nothing. A value that is not an IP address is ignored (it would also not fit the
sign-in records' address column).

An IPv6 client is counted by its /64 network (written as that network's first address,
`2001:db8:1:2::`): one home, phone or server is given a whole /64 and may use any of its 2**64
addresses (privacy extensions change them all the time), so counting single addresses would give
each client endless fresh budgets. An IPv4 address written in IPv6 form (`::ffff:192.0.2.1`) is
counted as the IPv4 address.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings

IPV6_COUNTED_PREFIX = 64


def _counted(value: str | None) -> str | None:
    """The address as the limits count it (see the module docstring), or None when not an address."""
    if not value:
        return None
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_COUNTED_PREFIX), strict=False).network_address)
    return str(address)


def client_address(request) -> str | None:
    """The address the limits count against; None when the request carries none (e.g. a shell)."""
    meta = getattr(request, "META", {})
    proxies = getattr(settings, "TRUSTED_PROXY_COUNT", 0)
    if proxies > 0:
        forwarded = [part.strip() for part in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if forwarded:
            chosen = _counted(forwarded[-proxies] if len(forwarded) >= proxies else forwarded[0])
            if chosen:
                return chosen
    return _counted(meta.get("REMOTE_ADDR"))
