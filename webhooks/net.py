"""Where a webhook may go, and posting to it (SSRF closed).

A URL is checked when an endpoint is saved and again at every delivery, after DNS resolution:

- `https://` only (`http://` too with `WEBHOOK_ALLOW_HTTP=1`), a host, no user:password part;
- every address the host resolves to must be public: loopback, private, link-local, multicast,
  reserved, unspecified, shared (CGNAT), documentation, IPv4-mapped/6to4/Teredo forms of those,
  … are refused (loopback is allowed with `WEBHOOK_ALLOW_LOOPBACK=1`, for local development).
  The refusal says only that the host is not allowed — never the address, its kind, or whether
  the name resolved — so saving endpoints cannot map the server's network (the log says why);
- the connection goes to the checked address itself (the host name only in `Host` and TLS SNI /
  certificate check), so a second DNS answer cannot point the request elsewhere, and redirects
  are never followed (a 3xx is a failed attempt).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import certifi
import urllib3
from django.conf import settings
from urllib3.exceptions import HTTPError as Urllib3Error

from axiomatic.retry_after import parse_retry_after

logger = logging.getLogger("webhooks")

MAX_URL_LENGTH = 2000
RESPONSE_BODY_LIMIT = 4096  # bytes kept in the deliveries log
MAX_RETRY_AFTER_SECONDS = 86400


class UrlRefused(ValueError):
    """The URL may not receive webhooks (the message says why)."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as written (IDNA-encoded), without brackets
    port: int
    path: str  # path and query
    host_header: str
    addresses: tuple[str, ...]


def _allow_http() -> bool:
    return bool(getattr(settings, "WEBHOOK_ALLOW_HTTP", False))


def _allow_loopback() -> bool:
    return bool(getattr(settings, "WEBHOOK_ALLOW_LOOPBACK", False))


def address_problem(address: str) -> str | None:
    """Why `address` may not receive webhooks, or None when it is public."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            return address_problem(str(embedded))
    if ip.is_loopback:
        return None if _allow_loopback() else "a loopback address"
    for test, label in (
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_reserved, "a reserved address"),
        (ip.is_private, "a private address"),
        (not ip.is_global, "a non-public address"),
    ):
        if test:
            return label
    return None


def parse(url: str) -> tuple[str, str, int, str, str]:
    """(scheme, host, port, path, Host header) of an acceptable URL; `UrlRefused` otherwise."""
    if not isinstance(url, str) or not url.strip():
        raise UrlRefused("Enter the URL that receives the webhooks.")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise UrlRefused(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    if any(ord(ch) < 33 or ord(ch) == 127 for ch in url):
        raise UrlRefused("The URL must not contain spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UrlRefused("This is not a valid URL.") from None
    scheme = parts.scheme.lower()
    if scheme == "http" and not _allow_http():
        raise UrlRefused("The URL must use https:// (plain http is not allowed).")
    if scheme not in ("https", "http"):
        raise UrlRefused("The URL must use https://.")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("The URL must not contain a user name or password.")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UrlRefused("The URL has no host.")
    try:
        host = host.encode("idna").decode("ascii") if not _is_ip(host) else host
    except UnicodeError:
        raise UrlRefused("The URL's host name is not valid.") from None
    default_port = 443 if scheme == "https" else 80
    port = port or default_port
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == default_port else f"{shown}:{port}"
    return scheme, host, port, path, host_header


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def resolve(host: str, port: int) -> tuple[str, ...]:
    """The addresses `host` resolves to (in the resolver's order, without repeats)."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        found = []
    addresses = tuple(dict.fromkeys(info[4][0] for info in found))
    if not addresses:
        logger.info("Webhook host %s refused: it does not resolve", host)
        raise host_not_allowed(host)
    return addresses


def host_not_allowed(host: str) -> UrlRefused:
    """The one refusal for a host that does not resolve, or resolves to any address that is not
    public. It names only the host as written: the address it resolved to, the kind of address
    (loopback, private, ...) or whether the name exists at all would tell whoever saves endpoints
    what the server's network and DNS hold. The operator's log says why."""
    return UrlRefused(f"The host {host} is not allowed: webhooks go only to hosts whose addresses are all public.")


def check_url(url: str) -> Target:
    """Parse, resolve and check `url`: every address must be allowed (see the module docstring)."""
    scheme, host, port, path, host_header = parse(url)
    addresses = resolve(host, port)
    for address in addresses:
        problem = address_problem(address)
        if problem:
            logger.info("Webhook host %s refused: it resolves to %s (%s)", host, problem, address)
            raise host_not_allowed(host)
    return Target(scheme, host, port, path, host_header, addresses)


# --- posting ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpResult:
    status: int | None  # None: no HTTP answer (refused URL, connection error, timeout)
    body: str
    error: str
    duration_ms: int
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300 and not self.error


class Sender:
    """POSTs to one URL for a while (one task's run): the URL is checked and resolved once, when
    created, and one kept-alive connection to the checked address serves every request."""

    def __init__(self, url: str, *, timeout: float):
        self.timeout = timeout
        self.refused: str | None = None
        self.target: Target | None = None
        self._pool = None
        self._addresses: list[str] = []
        try:
            self.target = check_url(url)
            self._addresses = list(self.target.addresses)
        except UrlRefused as exc:
            self.refused = str(exc)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def post(self, body: bytes, headers: dict[str, str]) -> HttpResult:
        """One POST; never raises for network trouble. A 2xx within the timeout is success."""
        started = time.monotonic()

        def elapsed_ms() -> int:
            return int((time.monotonic() - started) * 1000)

        if self.refused is not None or self.target is None:
            return HttpResult(None, "", self.refused or "Refused", elapsed_ms())
        target, timeout = self.target, self.timeout
        last_error = "no address to connect to"
        while self._addresses:
            if self._pool is None:
                self._pool = _pool(target, self._addresses[0], timeout)
            try:
                response = self._pool.urlopen(
                    "POST",
                    target.path,
                    body=body,
                    headers={**headers, "Host": target.host_header},
                    redirect=False,
                    retries=False,
                    preload_content=False,
                    assert_same_host=False,
                    timeout=urllib3.Timeout(total=timeout, connect=min(timeout, 5.0)),
                )
            except urllib3.exceptions.NewConnectionError as exc:
                last_error = f"Could not connect to {self._addresses[0]}: {_reason(exc)}"
                self.close()
                self._addresses.pop(0)  # the next checked address, if the host has several
                continue
            except urllib3.exceptions.TimeoutError:
                self.close()
                return HttpResult(None, "", f"No answer within {timeout:g} s", elapsed_ms())
            except (Urllib3Error, OSError) as exc:
                self.close()
                return HttpResult(None, "", f"Connection failed: {_reason(exc)}", elapsed_ms())
            return self._result(response, elapsed_ms)
        self._addresses = list(target.addresses)  # try them all again next time
        return HttpResult(None, "", last_error, elapsed_ms())

    def _result(self, response, elapsed_ms) -> HttpResult:
        timeout = self.timeout
        try:
            raw = response.read(RESPONSE_BODY_LIMIT, decode_content=False) or b""
        except (Urllib3Error, OSError):
            raw = b""
        status = response.status
        duration = elapsed_ms()
        error = ""
        if duration > timeout * 1000:
            error = f"The answer took longer than {timeout:g} s"
        elif 300 <= status < 400:
            error = f"Redirects are not followed ({status})"
        elif not 200 <= status < 300:
            error = f"HTTP {status}"
        retry_after = parse_retry_after(response.headers.get("Retry-After"), cap=MAX_RETRY_AFTER_SECONDS)
        # Kept alive only when the answer was read to its end and the server keeps the connection.
        keep = (
            not error
            and response.length_remaining == 0
            and getattr(response, "version", 10) >= 11
            and "close" not in (response.headers.get("Connection") or "").lower()
        )
        if keep:
            response.release_conn()
        else:
            response.close()
            self.close()
        return HttpResult(status, raw[:RESPONSE_BODY_LIMIT].decode("utf-8", "replace"), error, duration, retry_after)


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float) -> HttpResult:
    """One POST to `url` (checked now, connecting to the checked address), on a fresh connection."""
    sender = Sender(url, timeout=timeout)
    try:
        return sender.post(body, headers)
    finally:
        sender.close()


def _pool(target: Target, address: str, timeout: float):
    timeouts = urllib3.Timeout(total=timeout, connect=min(timeout, 5.0))
    if target.scheme == "https":
        return urllib3.HTTPSConnectionPool(
            address,
            target.port,
            timeout=timeouts,
            retries=False,
            maxsize=1,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
            server_hostname=target.host,
            assert_hostname=target.host,
        )
    return urllib3.HTTPConnectionPool(address, target.port, timeout=timeouts, retries=False, maxsize=1)


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    return text.split(": ", 1)[-1][:300] if text else type(exc).__name__
