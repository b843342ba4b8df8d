"""A fake Google + Microsoft, speaking their real HTTP endpoints on 127.0.0.1.

One `ThreadingHTTPServer` serves both providers' OAuth (authorize with auto-consent, token
endpoint with authorization_code + PKCE and refresh_token grants), the Gmail API
(`users/me/profile`, `users/me/messages/send`, `users/me/history`, `users/me/messages/{id}`) and
Microsoft Graph (`/v1.0/me`, drafts, send, `mailFolders/inbox/messages/delta`, attachments).
Every token belongs to one mailbox, so many mailboxes can be served at once; tests put received
mail in a mailbox with `receive_gmail` / `receive_outlook`.
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
from datetime import UTC, datetime
from email.utils import format_datetime, parseaddr
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlencode, urlsplit

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
class GmailBox:
    """One Gmail mailbox's history: every message added, with the historyId that added it."""

    history_id: int = 1000
    oldest_history: int = 0  # a startHistoryId below this answers 404 (history expired)
    records: list = field(default_factory=list)  # (history_id, message resource)


@dataclass
class GraphBox:
    """One Outlook inbox: messages in arrival order (`seq`) for the delta."""

    seq: int = 0
    oldest_token: int = 0  # a delta token below this answers 410 (sync state gone)
    messages: list = field(default_factory=list)  # (seq, message resource, attachment names)


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
    token_mailbox: dict = field(default_factory=dict)  # access or refresh token -> mailbox address
    gmail_boxes: dict = field(default_factory=lambda: defaultdict(GmailBox))
    graph_boxes: dict = field(default_factory=lambda: defaultdict(GraphBox))
    page_size: int = 10  # history records / delta items per page
    get_delay: float = 0.0  # seconds each messages.get waits (a slow mailbox)


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
    def script(
        self,
        operation: str,
        status: int,
        *,
        headers: dict | None = None,
        body: dict | None = None,
        mailbox: str | None = None,
    ) -> None:
        """The next `operation` ("gmail_send", "graph_create", "graph_send", "token", "gmail_history",
        "gmail_get", "gmail_profile", "graph_delta") answers this; with `mailbox`, only that mailbox's."""
        key = f"{operation}@{mailbox}" if mailbox else operation
        with self.lock:
            self.state.scripts[key].append((status, headers or {}, body))

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

    def default_mailbox(self, provider: str) -> str:
        return self.state.gmail_address if provider == "google" else self.state.outlook_identity["mail"]

    def issue(self, provider: str, *, with_refresh: bool = True, mailbox: str | None = None) -> dict:
        mailbox = mailbox or self.default_mailbox(provider)
        access = f"at-{provider}-{secrets.token_urlsafe(16)}"
        self.state.access_tokens[access] = provider
        self.state.token_mailbox[access] = mailbox
        self.state.seen_tokens.add(access)
        token = {"access_token": access, "token_type": "Bearer", "expires_in": self.state.expires_in}
        if with_refresh:
            refresh = f"rt-{provider}-{secrets.token_urlsafe(16)}"
            self.state.refresh_tokens[refresh] = provider
            self.state.token_mailbox[refresh] = mailbox
            self.state.seen_tokens.add(refresh)
            token["refresh_token"] = refresh
        return token

    # --- received mail ---
    def receive_gmail(
        self,
        mailbox: str,
        *,
        sender: str,
        to: str,
        subject: str = "Re: Following up",
        text: str | None = "Thanks, sounds good.",
        html: str | None = None,
        message_id: str | None = None,
        in_reply_to: str | None = None,
        thread_id: str | None = None,
        cc: str | None = None,
        attachments: tuple[str, ...] = (),
        labels: tuple[str, ...] = ("INBOX", "UNREAD"),
    ) -> dict:
        """A message arrives in a Gmail mailbox (a new history record); returns its resource."""
        gmail_id = self.next_id("rx")
        headers = [
            {"name": "From", "value": sender},
            {"name": "To", "value": to},
            {"name": "Subject", "value": subject},
            {"name": "Date", "value": format_datetime(datetime.now(tz=UTC))},
            {"name": "Message-ID", "value": message_id if message_id is not None else f"<{gmail_id}@mail.example>"},
        ]
        if cc:
            headers.append({"name": "Cc", "value": cc})
        if in_reply_to:
            headers += [{"name": "In-Reply-To", "value": in_reply_to}, {"name": "References", "value": in_reply_to}]
        parts = []
        for mime_type, content in (("text/plain", text), ("text/html", html)):
            if content is not None:
                data = base64.urlsafe_b64encode(content.encode()).decode().rstrip("=")
                parts.append(
                    {
                        "mimeType": mime_type,
                        "filename": "",
                        "headers": [{"name": "Content-Type", "value": f"{mime_type}; charset=UTF-8"}],
                        "body": {"size": len(content), "data": data},
                    }
                )
        body = {"mimeType": "multipart/alternative", "filename": "", "headers": [], "parts": parts}
        files = [
            {"mimeType": "application/octet-stream", "filename": name, "body": {"attachmentId": f"att-{i}", "size": 9}}
            for i, name in enumerate(attachments)
        ]
        payload = {"mimeType": "multipart/mixed", "filename": "", "headers": headers, "parts": [body, *files]}
        resource = {
            "id": gmail_id,
            "threadId": thread_id or f"th-{gmail_id}",
            "labelIds": list(labels),
            "snippet": (text or "")[:100],
            "internalDate": str(int(time.time() * 1000)),
            "payload": payload,
        }
        with self.lock:
            box = self.state.gmail_boxes[mailbox]
            box.history_id += 1
            box.records.append((box.history_id, resource))
        return resource

    def receive_outlook(
        self,
        mailbox: str,
        *,
        sender: str,
        to: str,
        subject: str = "RE: Following up",
        body: str = "Thanks, sounds good.",
        content_type: str = "text",
        internet_message_id: str | None = None,
        conversation_id: str | None = None,
        cc: tuple[str, ...] = (),
        attachments: tuple[str, ...] = (),
    ) -> dict:
        """A message arrives in an Outlook inbox (the next delta shows it); returns its resource."""
        graph_id = self.next_id("AAMkRX")
        resource = {
            "id": graph_id,
            "conversationId": conversation_id or f"conv-{graph_id}",
            "internetMessageId": internet_message_id
            if internet_message_id is not None
            else f"<{graph_id}@outlook.example>",
            "subject": subject,
            "from": {"emailAddress": {"address": parseaddr(sender)[1], "name": parseaddr(sender)[0]}},
            "toRecipients": [{"emailAddress": {"address": to}}],
            "ccRecipients": [{"emailAddress": {"address": a}} for a in cc],
            "receivedDateTime": datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "body": {"contentType": content_type, "content": body},
            "hasAttachments": bool(attachments),
            "isDraft": False,
        }
        with self.lock:
            box = self.state.graph_boxes[mailbox]
            box.seq += 1
            box.messages.append((box.seq, resource, tuple(attachments)))
        return resource


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
            mailbox = self._mailbox()
            with fake.lock:
                queue = fake.state.scripts.get(f"{operation}@{mailbox}") or fake.state.scripts.get(operation)
                entry = queue.popleft() if queue else None
            if entry is None:
                return False
            status, headers, body = entry
            self._send(status, body, headers)
            return True

        def _mailbox(self) -> str:
            header = self.headers.get("Authorization", "")
            with fake.lock:
                return fake.state.token_mailbox.get(header[7:], "")

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
            self.query = query
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
                    mailbox = fake.state.token_mailbox.get(refresh)
                    token = fake.issue(provider, with_refresh=provider == "microsoft", mailbox=mailbox)
                    return self._send(200, token)
            self._send(400, {"error": "unsupported_grant_type"})

        # --- Gmail ---
        def _gmail(self, method: str, rest: str, body: bytes) -> None:
            if not self._bearer("google"):
                return
            mailbox = self._mailbox()
            if method == "GET" and rest == "profile":
                if self._scripted("gmail_profile"):
                    return
                with fake.lock:
                    history_id = fake.state.gmail_boxes[mailbox].history_id
                return self._send(200, {"emailAddress": mailbox, "messagesTotal": 1, "historyId": str(history_id)})
            if method == "GET" and rest == "history":
                return self._gmail_history(mailbox)
            if method == "GET" and rest.startswith("messages/") and rest.count("/") == 1:
                return self._gmail_get(mailbox, rest.removeprefix("messages/"))
            if method == "POST" and rest == "messages/send":
                if fake.state.send_delay:
                    time.sleep(fake.state.send_delay)
                if self._scripted("gmail_send"):
                    return
                raw = json.loads(body)["raw"]
                data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
                message_id = fake.next_id("gm")
                thread_id = f"th-{message_id}"
                with fake.lock:
                    fake.state.delivered.append(Delivered(channel="gmail", message_id=message_id, raw=data))
                    # Like Gmail, the sent copy is a history record too (labelled SENT).
                    box = fake.state.gmail_boxes[mailbox]
                    box.history_id += 1
                    box.records.append(
                        (box.history_id, {"id": message_id, "threadId": thread_id, "labelIds": ["SENT"]})
                    )
                return self._send(200, {"id": message_id, "threadId": thread_id, "labelIds": ["SENT"]})
            self._send(404, {"error": {"code": 404, "message": "Not found"}})

        def _gmail_history(self, mailbox: str) -> None:
            if self._scripted("gmail_history"):
                return
            try:
                start = int(self.query.get("startHistoryId", ""))
            except ValueError:
                return self._send(400, {"error": {"code": 400, "message": "Invalid startHistoryId"}})
            offset = int(self.query.get("pageToken") or 0)
            with fake.lock:
                box = fake.state.gmail_boxes[mailbox]
                if start < box.oldest_history:
                    return self._send(404, {"error": {"code": 404, "message": "Requested entity was not found."}})
                records = [(hid, res) for hid, res in box.records if hid > start]
                current = box.history_id
                size = fake.state.page_size
            page = records[offset : offset + size]
            body = {
                "history": [
                    {
                        "id": str(hid),
                        "messages": [{"id": res["id"], "threadId": res["threadId"]}],
                        "messagesAdded": [
                            {"message": {"id": res["id"], "threadId": res["threadId"], "labelIds": res["labelIds"]}}
                        ],
                    }
                    for hid, res in page
                ],
                "historyId": str(current),
            }
            if offset + size < len(records):
                body["nextPageToken"] = str(offset + size)
            if not body["history"]:
                del body["history"]  # Gmail leaves the key out when there is nothing
            return self._send(200, body)

        def _gmail_get(self, mailbox: str, message_id: str) -> None:
            if fake.state.get_delay:
                time.sleep(fake.state.get_delay)
            if self._scripted("gmail_get"):
                return
            if self.query.get("format") != "full":
                return self._send(400, {"error": {"code": 400, "message": "format=full expected by the fake"}})
            with fake.lock:
                found = next(
                    (res for _, res in fake.state.gmail_boxes[mailbox].records if res["id"] == message_id), None
                )
            if found is None:
                return self._send(404, {"error": {"code": 404, "message": "Requested entity was not found."}})
            return self._send(200, found)

        # --- Microsoft Graph ---
        def _graph(self, method: str, rest: str, body: bytes) -> None:
            if not self._bearer("microsoft"):
                return
            mailbox = self._mailbox()
            if method == "GET" and rest == "":
                identity = dict(fake.state.outlook_identity)
                if mailbox != fake.state.outlook_identity["mail"]:
                    identity["mail"] = mailbox
                return self._send(200, {"id": "user-1", **identity})
            if method == "GET" and rest == "/mailFolders/inbox/messages/delta":
                return self._graph_delta(mailbox)
            if method == "POST" and rest == "/messages":
                if self._scripted("graph_create"):
                    return
                draft_id = fake.next_id("AAMkAG")
                with fake.lock:
                    fake.state.drafts[draft_id] = {"message": json.loads(body), "isDraft": True}
                return self._send(201, {"id": draft_id, "isDraft": True, "conversationId": f"conv-{draft_id}"})
            if rest.startswith("/messages/"):
                tail = rest.removeprefix("/messages/")
                draft_id, _, action = tail.partition("/")
                with fake.lock:
                    draft = fake.state.drafts.get(draft_id)
                    received = next(
                        (m for m in fake.state.graph_boxes[mailbox].messages if m[1]["id"] == draft_id), None
                    )
                if received is not None and method == "GET" and action == "attachments":
                    return self._send(
                        200, {"value": [{"id": f"att-{i}", "name": n} for i, n in enumerate(received[2])]}
                    )
                if draft is None:
                    return self._send(404, {"error": {"code": "ErrorItemNotFound", "message": "Not found."}})
                if method == "GET" and action == "":
                    return self._send(
                        200, {"id": draft_id, "isDraft": draft["isDraft"], "conversationId": f"conv-{draft_id}"}
                    )
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

        def _graph_delta(self, mailbox: str) -> None:
            """A delta view is fixed at its first request: (after seq, received since, up to seq);
            pages by offset through `$skiptoken`; the last page gives `$deltatoken` = its end."""
            if self._scripted("graph_delta"):
                return
            query = self.query
            with fake.lock:
                box = fake.state.graph_boxes[mailbox]
                if "$skiptoken" in query:
                    after, since, end, offset = query["$skiptoken"].split("~")
                    after, end, offset = int(after), int(end), int(offset)
                elif "$deltatoken" in query:
                    after, since, end, offset = int(query["$deltatoken"]), "", box.seq, 0
                    if after < box.oldest_token:
                        return self._send(410, {"error": {"code": "SyncStateNotFound", "message": "Resync required."}})
                else:
                    if "$select" not in query:
                        return self._send(400, {"error": {"code": "BadRequest", "message": "fake wants $select"}})
                    since = query.get("$filter", "").removeprefix("receivedDateTime ge ")
                    after, end, offset = 0, box.seq, 0
                items = [
                    (res, names)
                    for seq, res, names in box.messages
                    if after < seq <= end and (not since or res["receivedDateTime"] >= since)
                ]
                size = fake.state.page_size
            page = items[offset : offset + size]
            link = f"{fake.base_url}/v1.0/me/mailFolders/inbox/messages/delta"
            body = {"value": [res for res, _ in page]}
            if offset + size < len(items):
                body["@odata.nextLink"] = f"{link}?$skiptoken={quote(f'{after}~{since}~{end}~{offset + size}')}"
            else:
                body["@odata.deltaLink"] = f"{link}?$deltatoken={end}"
            return self._send(200, body)

    return Handler
