"""OAuth 2 authorization-code flow (with PKCE) and token refresh for the mailbox providers.

Everything goes through Authlib's `OAuth2Session`; every URL and credential is a setting, so
tests point them at a fake provider. Tokens returned here are plain dicts that the caller
encrypts at once; they are never logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session, OAuthError
from django.conf import settings

from crm.providers.base import CONNECT_TIMEOUT_SECONDS, RefreshRefused, TransientProviderError

GMAIL_READ_SCOPE = "https://www.googleapis.com/auth/gmail.readonly"
GMAIL_SCOPES = (
    "https://www.googleapis.com/auth/gmail.compose",  # send + users.getProfile
    GMAIL_READ_SCOPE,  # inbound sync: users.history.list and users.messages.get
)
OUTLOOK_READ_SCOPE = "https://graph.microsoft.com/Mail.Read"
OUTLOOK_SCOPES = (
    "offline_access",
    "https://graph.microsoft.com/User.Read",
    "https://graph.microsoft.com/Mail.ReadWrite",  # drafts, so a sent message has an id
    "https://graph.microsoft.com/Mail.Send",
    OUTLOOK_READ_SCOPE,  # inbound sync: the inbox's messages/delta (named though ReadWrite implies it)
)
# Granted scopes (as the token endpoint reports them) any of which lets the inbound sync read mail.
_READING_SCOPES = {
    "gmail": {GMAIL_READ_SCOPE, "https://www.googleapis.com/auth/gmail.modify", "https://mail.google.com/"},
    "outlook": {"mail.read", "mail.readwrite"},
}
# OAuth error codes that mean "try again later" rather than "this grant is dead".
_TRANSIENT_OAUTH_ERRORS = {"temporarily_unavailable", "server_error", "slow_down"}


def grants_mail_reading(channel: str, granted_scopes: str) -> bool:
    """Whether a connection's granted scopes let the inbound sync read its mail.

    Mailboxes connected before reading was asked for lack it and must be connected again. An empty
    record (the provider did not report the scopes) is not held against the mailbox: the sync
    tries, and a refusal from the provider is reported the same way.
    """
    granted = granted_scopes.split()
    if not granted:
        return True
    if channel == "outlook":  # Microsoft reports "Mail.Read" or the full resource URL
        names = {scope.rsplit("/", 1)[-1].lower() for scope in granted}
        return bool(names & _READING_SCOPES["outlook"])
    return bool(set(granted) & _READING_SCOPES.get(channel, set()))


@dataclass(frozen=True)
class OAuthClientConfig:
    channel: str
    label: str
    client_id: str
    client_secret: str
    authorize_url: str
    token_url: str
    scopes: tuple[str, ...]
    authorize_params: dict = field(default_factory=dict)

    @property
    def configured(self) -> bool:
        return bool(self.client_id and self.authorize_url and self.token_url)


def oauth_config(channel: str) -> OAuthClientConfig:
    """The provider's OAuth client, read from settings at call time."""
    if channel == "gmail":
        return OAuthClientConfig(
            channel="gmail",
            label="Gmail",
            client_id=settings.GOOGLE_OAUTH_CLIENT_ID,
            client_secret=settings.GOOGLE_OAUTH_CLIENT_SECRET,
            authorize_url=settings.GOOGLE_OAUTH_AUTHORIZE_URL,
            token_url=settings.GOOGLE_OAUTH_TOKEN_URL,
            scopes=GMAIL_SCOPES,
            # offline + consent: Google returns a refresh token every time the user connects.
            authorize_params={"access_type": "offline", "prompt": "consent", "include_granted_scopes": "true"},
        )
    if channel == "outlook":
        return OAuthClientConfig(
            channel="outlook",
            label="Outlook",
            client_id=settings.MICROSOFT_OAUTH_CLIENT_ID,
            client_secret=settings.MICROSOFT_OAUTH_CLIENT_SECRET,
            authorize_url=settings.MICROSOFT_OAUTH_AUTHORIZE_URL,
            token_url=settings.MICROSOFT_OAUTH_TOKEN_URL,
            scopes=OUTLOOK_SCOPES,
            authorize_params={"response_mode": "query", "prompt": "select_account"},
        )
    raise ValueError(f"Unknown email channel {channel!r}")


def _session(config: OAuthClientConfig, *, redirect_uri: str | None = None) -> OAuth2Session:
    return OAuth2Session(
        client_id=config.client_id,
        client_secret=config.client_secret,
        scope=" ".join(config.scopes),
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_post",
        default_timeout=(CONNECT_TIMEOUT_SECONDS, settings.PROVIDER_HTTP_TIMEOUT_SECONDS),
    )


@dataclass(frozen=True)
class AuthorizationRequest:
    url: str
    state: str
    code_verifier: str


def authorization_request(*, channel: str, redirect_uri: str) -> AuthorizationRequest:
    """The provider's consent URL with a fresh `state` and PKCE verifier (kept in the session)."""
    config = oauth_config(channel)
    code_verifier = generate_token(64)
    with _session(config, redirect_uri=redirect_uri) as session:
        url, state = session.create_authorization_url(
            config.authorize_url, code_verifier=code_verifier, **config.authorize_params
        )
    return AuthorizationRequest(url=url, state=state, code_verifier=code_verifier)


@dataclass(frozen=True)
class TokenSet:
    access_token: str
    refresh_token: str | None
    expires_at: datetime | None
    scope: str

    def __repr__(self) -> str:  # never print secrets, even in tracebacks' locals
        return f"TokenSet(expires_at={self.expires_at!r}, scope={self.scope!r})"


def _token_set(token: dict) -> TokenSet:
    access_token = token.get("access_token")
    if not access_token:
        raise OAuthError(error="invalid_response", description="The token response has no access_token.")
    expires_at = token.get("expires_at")
    return TokenSet(
        access_token=str(access_token),
        refresh_token=token.get("refresh_token") or None,
        expires_at=datetime.fromtimestamp(int(expires_at), tz=UTC) if expires_at else None,
        scope=str(token.get("scope") or "")[:1000],
    )


class CodeExchangeFailed(Exception):
    """The code could not be exchanged; the message is safe to show the user."""


def exchange_code(*, channel: str, redirect_uri: str, code: str, code_verifier: str) -> TokenSet:
    """Trade the authorization code for tokens (token endpoint, authorization_code grant)."""
    config = oauth_config(channel)
    try:
        with _session(config, redirect_uri=redirect_uri) as session:
            token = session.fetch_token(config.token_url, code=code, code_verifier=code_verifier)
        return _token_set(token)
    except OAuthError as exc:
        raise CodeExchangeFailed(f"{config.label} refused the authorization ({exc.error}).") from None
    except (requests.RequestException, ValueError) as exc:
        raise CodeExchangeFailed(f"{config.label} could not be reached ({type(exc).__name__}).") from None


def refresh_tokens(*, channel: str, refresh_token: str) -> TokenSet:
    """A new access token from the refresh token.

    Raises `RefreshRefused` when the provider says the grant is no longer valid (the user must
    reconnect) and `TransientProviderError` when it could not answer properly (retry later).
    """
    config = oauth_config(channel)
    if not refresh_token:
        raise RefreshRefused(f"{config.label}: no refresh token is stored; reconnect the mailbox.")
    try:
        with _session(config) as session:
            token = session.refresh_token(config.token_url, refresh_token=refresh_token)
        return _token_set(token)
    except OAuthError as exc:
        if exc.error in _TRANSIENT_OAUTH_ERRORS:
            raise TransientProviderError(f"{config.label} token endpoint: {exc.error}") from None
        raise RefreshRefused(f"{config.label} refused to refresh the access token ({exc.error}).") from None
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status == 429 or status >= 500:
            raise TransientProviderError(f"{config.label} token endpoint answered {status}") from None
        raise RefreshRefused(f"{config.label} refused to refresh the access token (HTTP {status}).") from None
    except (requests.RequestException, ValueError) as exc:
        raise TransientProviderError(f"{config.label} token endpoint: network error ({type(exc).__name__})") from None
