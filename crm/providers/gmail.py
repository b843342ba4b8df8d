"""Gmail API client: `users.getProfile`, `users.messages.send` with a raw RFC 2822 message, and
reading received mail with `users.history.list` + `users.messages.get` (inbound sync)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.policy import SMTP
from email.utils import formataddr, formatdate, getaddresses, parsedate_to_datetime
from urllib.parse import quote

from django.conf import settings

from crm.providers.base import (
    Checkpoint,
    InboundMessage,
    InboxCursorExpired,
    InboxPage,
    Mailbox,
    MailProvider,
    OutgoingMessage,
    PermanentProviderError,
)
from crm.providers.reading import addresses, bare_message_id, cut, fetch_all, message_ids, parse_or_skip


def _address_header(values: list[str]) -> list[Address]:
    addresses = []
    for name, addr in getaddresses(values):
        local, _, domain = addr.rpartition("@")
        addresses.append(Address(display_name=name, username=local, domain=domain))
    return addresses


def build_mime_message(message: OutgoingMessage) -> EmailMessage:
    """multipart/alternative (text + HTML; text only without HTML) built with the stdlib, so headers
    are encoded correctly and no header can be injected.

    Bcc stays in the message handed to Gmail: Gmail delivers to those recipients and strips the
    header from what the others receive.
    """
    mime = EmailMessage(policy=SMTP)
    mime["From"] = _address_header([formataddr((message.from_name, message.from_address))])
    mime["To"] = _address_header(message.to)
    if message.cc:
        mime["Cc"] = _address_header(message.cc)
    if message.bcc:
        mime["Bcc"] = _address_header(message.bcc)
    mime["Subject"] = message.subject
    mime["Date"] = formatdate(usegmt=True)
    mime["Message-ID"] = message.message_id
    mime.set_content(message.text_body or " ", subtype="plain", charset="utf-8")
    if message.html_body:
        mime.add_alternative(message.html_body, subtype="html", charset="utf-8")
    return mime


def raw_message(message: OutgoingMessage) -> str:
    """The base64url-encoded RFC 2822 bytes, as `users.messages.send` expects in `raw`."""
    return base64.urlsafe_b64encode(build_mime_message(message).as_bytes()).decode("ascii")


class GmailProvider(MailProvider):
    channel = "gmail"
    name = "Gmail"

    @property
    def base(self) -> str:
        return settings.GMAIL_API_BASE_URL.rstrip("/") + "/gmail/v1/users/me"

    def mailbox(self) -> Mailbox:
        data = self.http.call("GET", f"{self.base}/profile").json()
        address = str(data.get("emailAddress") or "").strip()
        if not address:
            raise PermanentProviderError("Gmail did not tell the mailbox address.")
        return Mailbox(email_address=address)

    def send(self, message: OutgoingMessage, *, checkpoint: Checkpoint) -> str:
        response = self.http.call("POST", f"{self.base}/messages/send", json={"raw": raw_message(message)})
        self.sent_thread_id = str(response.json().get("threadId") or "")[:500]
        message_id = str(response.json().get("id") or "")
        if not message_id:
            # Accepted (2xx) but without an id: it is sent, so this must not be retried.
            return "unknown"
        return message_id

    # --- reading (inbound sync) -------------------------------------------------------------

    _SKIPPED_LABELS = frozenset({"SENT", "DRAFT", "SPAM", "TRASH", "CHAT"})

    def inbox_start(self) -> str:
        """The mailbox's current historyId: mail from now on."""
        history_id = str(self.http.call("GET", f"{self.base}/profile").json().get("historyId") or "")
        if not history_id:
            raise PermanentProviderError("Gmail did not tell the mailbox's historyId.")
        return history_id

    def inbox_page(self, cursor: str) -> InboxPage:
        """One page of `users.history.list` (messageAdded) after `cursor`, the new messages fetched.

        The cursor moves to the last history record of the page while more pages follow (a crash
        resumes there), and to the mailbox's historyId after the last page.
        """
        params = {"startHistoryId": cursor, "historyTypes": "messageAdded"}
        if self._continuation and self._continuation[0] == cursor:
            # The next page of the same listing: a page token belongs to the listing's own start.
            params = {**params, "startHistoryId": self._continuation[1], "pageToken": self._continuation[2]}
        response = self.http.call("GET", f"{self.base}/history", params=params, ok=(200, 404))
        if response.status_code == 404:
            raise InboxCursorExpired(f"Gmail no longer has history from {params['startHistoryId']}.")
        data = response.json()
        records = data.get("history") or []
        ids: list[str] = []
        for record in records:
            for added in record.get("messagesAdded") or []:
                message = added.get("message") or {}
                message_id = str(message.get("id") or "")
                labels = set(message.get("labelIds") or ())
                if message_id and message_id not in ids and not self._SKIPPED_LABELS & labels:
                    ids.append(message_id)
        next_token = str(data.get("nextPageToken") or "")
        if next_token:
            # Resuming from the page's last record (after a crash, in the next run) reads what follows it.
            new_cursor = str(records[-1].get("id") or cursor) if records else cursor
            self._continuation = (new_cursor, params["startHistoryId"], next_token)
        else:
            new_cursor = str(data.get("historyId") or cursor)
            self._continuation = None
        messages = [m for m in fetch_all(self._message, ids) if m is not None]
        return InboxPage(messages=messages, cursor=new_cursor, more=bool(next_token))

    # (cursor handed out, the listing's startHistoryId, its nextPageToken) while a listing has more pages.
    _continuation: tuple[str, str, str] | None = None

    def _message(self, message_id: str) -> InboundMessage | None:
        response = self.http.call(
            "GET", f"{self.base}/messages/{quote(message_id, safe='')}", params={"format": "full"}, ok=(200, 404)
        )
        if response.status_code == 404:  # deleted between the history and now
            return None
        data = response.json()
        if self._SKIPPED_LABELS & set(data.get("labelIds") or ()):
            return None
        return parse_or_skip(gmail_inbound_message, data)


def _part_headers(part: dict) -> dict[str, str]:
    headers: dict[str, str] = {}
    for header in part.get("headers") or []:
        name = str(header.get("name") or "").lower()
        if name and name not in headers:
            headers[name] = str(header.get("value") or "")
    return headers


def _decode_body(part: dict, headers: dict[str, str]) -> str:
    data = str((part.get("body") or {}).get("data") or "")
    if not data:
        return ""
    raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    charset = Message()
    charset["Content-Type"] = headers.get("content-type", "text/plain; charset=utf-8")
    encoding = charset.get_content_charset() or "utf-8"
    try:
        return raw.decode(encoding, errors="replace")
    except LookupError:  # an unknown charset name
        return raw.decode("utf-8", errors="replace")


def _walk(part: dict, depth: int = 0):
    yield part
    if depth < 20:
        for child in part.get("parts") or []:
            yield from _walk(child, depth + 1)


def gmail_inbound_message(data: dict) -> InboundMessage:
    """A `users.messages.get?format=full` resource as an `InboundMessage` (bodies, names of attachments)."""
    payload = data.get("payload") or {}
    headers = _part_headers(payload)
    text = html = ""
    attachments: list[str] = []
    for part in _walk(payload):
        part_headers = _part_headers(part)
        mime_type = str(part.get("mimeType") or "").lower()
        filename = str(part.get("filename") or "")
        if filename:
            attachments.append(filename[:200])
        elif mime_type == "text/plain" and not text:
            text = cut(_decode_body(part, part_headers or headers))
        elif mime_type == "text/html" and not html:
            html = cut(_decode_body(part, part_headers or headers))
    senders = addresses(headers.get("from"))
    try:
        occurred_at = datetime.fromtimestamp(int(data.get("internalDate")) / 1000, tz=UTC)
    except (TypeError, ValueError):
        occurred_at = _header_date(headers.get("date"))
    return InboundMessage(
        provider_id=str(data.get("id") or ""),
        thread_id=str(data.get("threadId") or ""),
        message_id=bare_message_id(headers.get("message-id")),
        references=message_ids(headers.get("in-reply-to"), headers.get("references")),
        from_address=senders[0][1] if senders else "",
        from_name=senders[0][0] if senders else "",
        to=tuple(address for _, address in addresses(headers.get("to"))),
        cc=tuple(address for _, address in addresses(headers.get("cc"))),
        subject=headers.get("subject", "")[:1000],
        text=text,
        html=html,
        occurred_at=occurred_at,
        attachments=tuple(attachments[:50]),
    )


def _header_date(value: str | None) -> datetime:
    try:
        parsed = parsedate_to_datetime(value or "")
    except (TypeError, ValueError):
        return datetime.now(tz=UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
