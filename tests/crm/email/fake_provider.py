"""A fake Google + Microsoft, speaking their real HTTP endpoints on 127.0.0.1.

One `ThreadingHTTPServer` serves both providers' OAuth (authorize with auto-consent, token
endpoint with authorization_code + PKCE and refresh_token grants), the Gmail API
(`users/me/profile`, `users/me/messages/send`) and Microsoft Graph (`/v1.0/me`, drafts, send).
Tests script failures (`script(...)`), expire tokens, refuse refreshes, and read what was
"delivered". Nothing in the application is mocked: it talks HTTP to this server.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

CLIENTS = {
    "google": ("google-client-id", "google-client-secret"),
    "microsoft": ("microsoft-client-id", "microsoft-client-secret"),
}


@dataclass
class Delivered:
    channel: str
    message_id: str
    raw: bytes | None = None  # Gmail: the RFC 2822 bytes
    graph: dict | None = None  # Graph: the message resource


@dataclass
class FakeState:
    gmail_address: str = "alice.sales@gmail.example"
    outlook_identity: dict = field(
        default_factory=lambda: {
            "mail": "bob.sales@outlook.example",
            "userPrincipalName": "bob@contoso.example",
            "displayName": "Bob Sales",
        }
    )
    codes: dict = field(default_factory=dict)
    access_tokens: dict = field(default_factory=dict)  # token -> provider
    refresh_tokens: dict = field(default_factory=dict)  # token -> provider
    refuse_refresh: bool = False
    refresh_count: int = 0
    expires_in: int = 3600
    scripts: dict = field(default_factory=lambda: defaultdict(deque))
    delivered: list = field(default_factory=list)
    drafts: dict = field(default_factory=dict)  # id -> {"message": ..., "isDraft": bool}
    requests: list = field(default_factory=list)  # (method, path)
    send_delay: float = 0.0
    seen_tokens: set = field(default_factory=set)  # every token ever issued (for leak checks)


class FakeProvider:
    def __init__(self):
        self.lock = threading.RLock()
        self.state = FakeState()
        self._ids = itertools.count(1)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def reset(self) -> None:
        with self.lock:
            self.state = FakeState()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- knobs for tests ---
    def script(self, operation: str, status: int, *, headers: dict | None = None, body: dict | None = None) -> None:
        """The next `operation` ("gmail_send", "graph_create", "graph_send", "token") answers this."""
        with self.lock:
            self.state.scripts[operation].append((status, headers or {}, body))

    def expire_access_tokens(self) -> None:
        with self.lock:
            self.state.access_tokens.clear()

    def delivered(self, channel: str | None = None) -> list[Delivered]:
        with self.lock:
            return [d for d in self.state.delivered if channel is None or d.channel == channel]

    def count(self, method: str, path_prefix: str) -> int:
        with self.lock:
            return sum(1 for m, p in self.state.requests if m == method and p.startswith(path_prefix))

    # --- internals ---
    def next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}{secrets.token_hex(4)}"

    def issue(self, provider: str, *, with_refresh: bool = True) -> dict:
        access = f"at-{provider}-{secrets.token_urlsafe(16)}"
        self.state.access_tokens[access] = provider
        self.state.seen_tokens.add(access)
        token = {"access_token": access, "token_type": "Bearer", "expires_in": self.state.expires_in}
        if with_refresh:
            refresh = f"rt-{provider}-{secrets.token_urlsafe(16)}"
            self.state.refresh_tokens[refresh] = provider
            self.state.seen_tokens.add(refresh)
            token["refresh_token"] = refresh
        return token


def _handler_for(fake: FakeProvider):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # keep test output quiet
            pass

        # --- plumbing ---
        def _send(self, status: int, body=None, headers: dict | None = None) -> None:
            payload = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _scripted(self, operation: str) -> bool:
            with fake.lock:
                queue = fake.state.scripts.get(operation)
                entry = queue.popleft() if queue else None
            if entry is None:
                return False
            status, headers, body = entry
            self._send(status, body, headers)
            return True

        def _bearer(self, provider: str) -> bool:
            header = self.headers.get("Authorization", "")
            token = header[7:] if header.startswith("Bearer ") else ""
            with fake.lock:
                ok = fake.state.access_tokens.get(token) == provider
            if not ok:
                error = {
                    "error": {
                        "code": 401,
                        "message": "Invalid authentication credentials.",
                        "status": "UNAUTHENTICATED",
                    }
                }
                self._send(401, error, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
            return ok

        def _route(self, method: str) -> None:
            parts = urlsplit(self.path)
            with fake.lock:
                fake.state.requests.append((method, parts.path))
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            path = parts.path
            body = self._body() if method == "POST" else b""
            for provider in ("google", "microsoft"):
                if path == f"/{provider}/authorize" and method == "GET":
                    return self._authorize(provider, query)
                if path == f"/{provider}/token" and method == "POST":
                    return self._token(provider, {k: v[0] for k, v in parse_qs(body.decode()).items()})
            if path.startswith("/gmail/v1/users/me/"):
                return self._gmail(method, path.removeprefix("/gmail/v1/users/me/"), body)
            if path.startswith("/v1.0/me"):
                return self._graph(method, path.removeprefix("/v1.0/me"), body)
            self._send(404, {"error": {"code": 404, "message": f"No route {method} {path}"}})

        def do_GET(self):
            self._route("GET")

        def do_POST(self):
            self._route("POST")

        # --- OAuth ---
        def _authorize(self, provider: str, query: dict) -> None:
            client_id, _ = CLIENTS[provider]
            if query.get("client_id") != client_id or query.get("response_type") != "code":
                return self._send(400, {"error": "invalid_request"})
            if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
                return self._send(400, {"error": "invalid_request", "error_description": "PKCE required"})
            code = secrets.token_urlsafe(12)
            with fake.lock:
                fake.state.codes[code] = {
                    "provider": provider,
                    "redirect_uri": query["redirect_uri"],
                    "challenge": query["code_challenge"],
                    "scope": query.get("scope", ""),
                }
            target = query["redirect_uri"] + "?" + urlencode({"code": code, "state": query.get("state", "")})
            self._send(302, None, {"Location": target})

        def _token(self, provider: str, form: dict) -> None:
            if self._scripted("token"):
                return
            client_id, client_secret = CLIENTS[provider]
            if form.get("client_id") != client_id or form.get("client_secret") != client_secret:
                return self._send(401, {"error": "invalid_client"})
            with fake.lock:
                if form.get("grant_type") == "authorization_code":
                    grant = fake.state.codes.pop(form.get("code", ""), None)
                    verifier = form.get("code_verifier", "")
                    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
                    if (
                        grant is None
                        or grant["provider"] != provider
                        or grant["redirect_uri"] != form.get("redirect_uri")
                        or challenge.decode() != grant["challenge"]
                    ):
                        return self._send(400, {"error": "invalid_grant"})
                    token = fake.issue(provider)
                    token["scope"] = grant["scope"]
                    return self._send(200, token)
                if form.get("grant_type") == "refresh_token":
                    fake.state.refresh_count += 1
                    refresh = form.get("refresh_token", "")
                    if fake.state.refuse_refresh or fake.state.refresh_tokens.get(refresh) != provider:
                        return self._send(
                            400, {"error": "invalid_grant", "error_description": "Token has been revoked."}
                        )
                    # Google keeps the refresh token; Microsoft rotates it.
                    token = fake.issue(provider, with_refresh=provider == "microsoft")
                    return self._send(200, token)
            self._send(400, {"error": "unsupported_grant_type"})

        # --- Gmail ---
        def _gmail(self, method: str, rest: str, body: bytes) -> None:
            if not self._bearer("google"):
                return
            if method == "GET" and rest == "profile":
                return self._send(200, {"emailAddress": fake.state.gmail_address, "messagesTotal": 1, "historyId": "9"})
            if method == "POST" and rest == "messages/send":
                if fake.state.send_delay:
                    time.sleep(fake.state.send_delay)
                if self._scripted("gmail_send"):
                    return
                raw = json.loads(body)["raw"]
                data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
                message_id = fake.next_id("gm")
                with fake.lock:
                    fake.state.delivered.append(Delivered(channel="gmail", message_id=message_id, raw=data))
                return self._send(200, {"id": message_id, "threadId": message_id, "labelIds": ["SENT"]})
            self._send(404, {"error": {"code": 404, "message": "Not found"}})

        # --- Microsoft Graph ---
        def _graph(self, method: str, rest: str, body: bytes) -> None:
            if not self._bearer("microsoft"):
                return
            if method == "GET" and rest == "":
                return self._send(200, {"id": "user-1", **fake.state.outlook_identity})
            if method == "POST" and rest == "/messages":
                if self._scripted("graph_create"):
                    return
                draft_id = fake.next_id("AAMkAG")
                with fake.lock:
                    fake.state.drafts[draft_id] = {"message": json.loads(body), "isDraft": True}
                return self._send(201, {"id": draft_id, "isDraft": True})
            if rest.startswith("/messages/"):
                tail = rest.removeprefix("/messages/")
                draft_id, _, action = tail.partition("/")
                with fake.lock:
                    draft = fake.state.drafts.get(draft_id)
                if draft is None:
                    return self._send(404, {"error": {"code": "ErrorItemNotFound", "message": "Not found."}})
                if method == "GET" and action == "":
                    return self._send(200, {"id": draft_id, "isDraft": draft["isDraft"]})
                if method == "POST" and action == "send":
                    if fake.state.send_delay:
                        time.sleep(fake.state.send_delay)
                    if self._scripted("graph_send"):
                        return
                    with fake.lock:
                        if not draft["isDraft"]:
                            return self._send(404, {"error": {"code": "ErrorItemNotFound", "message": "Not a draft."}})
                        draft["isDraft"] = False
                        fake.state.delivered.append(
                            Delivered(channel="outlook", message_id=draft_id, graph=draft["message"])
                        )
                    return self._send(202)
            self._send(404, {"error": {"code": "NotFound", "message": "Not found"}})

    return Handler
