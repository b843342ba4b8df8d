"""The small interface every mailbox provider implements, and the errors it speaks.

A provider client is a thin HTTP client: it turns an `OutgoingMessage` into the provider's API
calls and every answer into either a message id or one of the errors below. Deciding what to do
about an error (retry, refresh the token, give up) is the email service's job, not the client's.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter

from axiomatic.retry_after import parse_retry_after as read_retry_after

logger = logging.getLogger("crm.providers")

MAX_RETRY_AFTER_SECONDS = 600.0
MAX_RAW_BODY_CHARS = 1_000_000  # a received body is cut here before any parsing of its HTML
CONNECT_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Mailbox:
    """Who a connected mailbox sends as."""

    email_address: str
    display_name: str = ""


@dataclass(frozen=True)
class OutgoingMessage:
    """A sanitised, validated email ready for a provider (addresses already normalised)."""

    from_address: str
    from_name: str
    to: list[str]
    cc: list[str]
    bcc: list[str]
    subject: str
    html_body: str
    text_body: str
    message_id: str


@dataclass(frozen=True)
class InboundMessage:
    """One message read from a mailbox, as the provider gave it (the inbound service decides
    what of it is stored: `crm.email.inbound`).

    `text` / `html` are the message's plain-text and HTML bodies as received (either may be
    empty, each cut at `MAX_RAW_BODY_CHARS`); attachments are only named, their content is never
    fetched. `references` holds the Message-IDs named by In-Reply-To and References.
    """

    provider_id: str
    thread_id: str
    message_id: str
    references: tuple[str, ...]
    from_address: str
    from_name: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str
    text: str
    html: str
    occurred_at: datetime
    attachments: tuple[str, ...] = ()


@dataclass(frozen=True)
class InboxPage:
    """A page of new messages and the cursor that follows it.

    `cursor` is where a sync resumes once this page is recorded (stored in the same transaction);
    `more` says another page is already waiting.
    """

    messages: list[InboundMessage]
    cursor: str
    more: bool


class InboxCursorExpired(Exception):
    """The stored cursor is too old for the provider (Gmail 404 on history, Graph 410 on delta)."""


@dataclass
class Checkpoint:
    """Provider state that must survive a retry (e.g. a Graph draft id), saved through `save`."""

    value: str = ""
    save: Callable[[str], None] = field(default=lambda value: None)

    def remember(self, value: str) -> None:
        self.value = value
        self.save(value)


class ProviderError(Exception):
    """Base: the provider did not (knowingly) send the message. `str(exc)` is safe to store."""


class TransientProviderError(ProviderError):
    """Try again later: 429, 5xx, network trouble. `retry_after` is the provider's hint, if any."""

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class AccessTokenRejected(ProviderError):
    """401: the access token is expired or revoked; a refresh may help (once)."""


class PermanentProviderError(ProviderError):
    """The provider refused the message for good (4xx other than 401/429)."""


class RefreshRefused(ProviderError):
    """The token endpoint refused the refresh token: the user must reconnect the mailbox."""


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a provider's Retry-After header, capped at 10 minutes."""
    return read_retry_after(value, cap=MAX_RETRY_AFTER_SECONDS)


def _error_text(response: requests.Response) -> str:
    """The provider's own error message (Google and Graph both use {"error": {"message"}})."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip()
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error.get("code") or "")[:300]
    if isinstance(error, str):
        return str(body.get("error_description") or error)[:300]
    return ""


_RATE_LIMIT_REASONS = {"rateLimitExceeded", "userRateLimitExceeded", "dailyLimitExceeded"}


def _is_rate_limited_403(response: requests.Response) -> bool:
    """Gmail answers some rate limits as 403 with a reason instead of 429."""
    try:
        errors = response.json().get("error", {}).get("errors", [])
    except (ValueError, AttributeError):
        return False
    return any(isinstance(e, dict) and e.get("reason") in _RATE_LIMIT_REASONS for e in errors)


class ProviderHttp:
    """requests with the bearer token, timeouts, and answers mapped to the errors above."""

    def __init__(self, *, access_token: str, name: str, pool_size: int = 10):
        self.name = name
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max(pool_size, 1))
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["Authorization"] = f"Bearer {access_token}"
        self.session.headers["Accept"] = "application/json"
        self.timeout = (CONNECT_TIMEOUT_SECONDS, settings.PROVIDER_HTTP_TIMEOUT_SECONDS)

    def call(self, method: str, url: str, *, ok: tuple[int, ...] = (200,), **kwargs) -> requests.Response:
        try:
            response = self.session.request(method, url, timeout=self.timeout, allow_redirects=False, **kwargs)
        except requests.RequestException as exc:
            # Never log the exception's request: it carries the Authorization header.
            raise TransientProviderError(f"{self.name}: network error ({type(exc).__name__})") from None
        if response.status_code in ok:
            return response
        status = response.status_code
        detail = _error_text(response)
        summary = f"{self.name} answered {status}" + (f": {detail}" if detail else "")
        if status == 401:
            raise AccessTokenRejected(summary)
        if status == 429 or (status == 403 and _is_rate_limited_403(response)):
            raise TransientProviderError(summary, retry_after=parse_retry_after(response.headers.get("Retry-After")))
        if status >= 500:
            raise TransientProviderError(summary, retry_after=parse_retry_after(response.headers.get("Retry-After")))
        raise PermanentProviderError(summary)

    def close(self) -> None:
        self.session.close()


class MailProvider(ABC):
    """One provider's mailbox API, authenticated with an access token."""

    channel: str = ""
    name: str = ""

    def __init__(self, *, access_token: str):
        self.http = ProviderHttp(
            access_token=access_token, name=self.name, pool_size=settings.EMAIL_SYNC_FETCH_CONCURRENCY
        )
        # The thread (Gmail threadId, Graph conversationId) of the last message `send` sent, if told.
        self.sent_thread_id = ""

    @abstractmethod
    def mailbox(self) -> Mailbox:
        """The address (and display name) of the mailbox the token belongs to."""

    @abstractmethod
    def send(self, message: OutgoingMessage, *, checkpoint: Checkpoint) -> str:
        """Send `message`; returns the provider's message id. Raises a `ProviderError`."""

    @abstractmethod
    def inbox_start(self) -> str:
        """A cursor meaning "now": a sync from it reads only mail that arrives afterwards."""

    @abstractmethod
    def inbox_page(self, cursor: str) -> InboxPage:
        """The next page of messages received after `cursor` (raises `InboxCursorExpired`)."""

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> MailProvider:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
