"""Microsoft Graph client for Outlook mailboxes: `/me`, and sending through a draft.

`sendMail` answers 202 without an id, so a message is created as a draft (`POST /me/messages`)
and then sent (`POST /me/messages/{id}/send`). Ids are requested immutable
(`Prefer: IdType="ImmutableId"`), so the draft's id is still the message's id once it sits in
Sent Items. The draft id is checkpointed on the email row: a retry after a failed send sends the
same draft again instead of creating a second one, and first asks Graph whether that draft was
in fact already sent (then it only records the id).

Received mail is read with the inbox's `messages/delta` (inbound sync): the first sync asks for the
fields used (`$select`) and for mail received from its start on, walks that round to its delta link
without recording it, and stores the link; afterwards the stored `@odata.nextLink` /
`@odata.deltaLink` is followed (only ever on GRAPH_API_BASE_URL).
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import getaddresses
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
    TransientProviderError,
)
from crm.providers.reading import bare_message_id, clean_address, cut, fetch_all, parse_or_skip

IMMUTABLE_IDS = {"Prefer": 'IdType="ImmutableId"'}
MAX_START_PAGES = 50
DELTA_SELECT = (
    "id,conversationId,internetMessageId,subject,from,toRecipients,ccRecipients,receivedDateTime,body,"
    "hasAttachments,isDraft"
)
DELTA_PREFER = {"Prefer": 'IdType="ImmutableId", odata.maxpagesize=50'}


def _recipients(values: list[str]) -> list[dict]:
    result = []
    for name, addr in getaddresses(values):
        entry = {"address": addr}
        if name:
            entry["name"] = name
        result.append({"emailAddress": entry})
    return result


def graph_message(message: OutgoingMessage) -> dict:
    """The Graph `message` resource for a draft (one body: the HTML, or the text without HTML)."""
    return {
        "subject": message.subject,
        "body": (
            {"contentType": "HTML", "content": message.html_body}
            if message.html_body
            else {"contentType": "Text", "content": message.text_body}
        ),
        "toRecipients": _recipients(message.to),
        "ccRecipients": _recipients(message.cc),
        "bccRecipients": _recipients(message.bcc),
    }


class OutlookProvider(MailProvider):
    channel = "outlook"
    name = "Microsoft Graph"

    @property
    def base(self) -> str:
        return settings.GRAPH_API_BASE_URL.rstrip("/") + "/v1.0/me"

    def mailbox(self) -> Mailbox:
        data = self.http.call("GET", self.base, params={"$select": "mail,userPrincipalName,displayName"}).json()
        address = str(data.get("mail") or data.get("userPrincipalName") or "").strip()
        if not address:
            raise PermanentProviderError("Microsoft Graph did not tell the mailbox address.")
        return Mailbox(email_address=address, display_name=str(data.get("displayName") or "")[:200])

    def _message_url(self, message_id: str) -> str:
        return f"{self.base}/messages/{quote(message_id, safe='')}"

    def _already_sent(self, draft_id: str) -> bool:
        """Whether a checkpointed draft left the Drafts state (sent by an earlier attempt)."""
        response = self.http.call(
            "GET",
            self._message_url(draft_id),
            params={"$select": "id,isDraft,conversationId"},
            headers=IMMUTABLE_IDS,
            ok=(200, 404),
        )
        if response.status_code == 404:
            # Neither a draft nor a sent message: deleted in the mailbox. Sending a fresh copy could
            # duplicate one the user already received, so this is final.
            raise PermanentProviderError("Microsoft Graph no longer has the draft of this email.")
        self.sent_thread_id = str(response.json().get("conversationId") or "")[:500]
        return response.json().get("isDraft") is False

    def send(self, message: OutgoingMessage, *, checkpoint: Checkpoint) -> str:
        draft_id = checkpoint.value
        if draft_id and self._already_sent(draft_id):
            return draft_id
        if not draft_id:
            created = self.http.call(
                "POST", f"{self.base}/messages", json=graph_message(message), headers=IMMUTABLE_IDS, ok=(200, 201)
            )
            self.sent_thread_id = str(created.json().get("conversationId") or "")[:500]
            draft_id = str(created.json().get("id") or "")
            if not draft_id:
                raise PermanentProviderError("Microsoft Graph created the draft without an id.")
            checkpoint.remember(draft_id)
        self.http.call("POST", f"{self._message_url(draft_id)}/send", headers=IMMUTABLE_IDS, ok=(200, 202, 204))
        return draft_id

    # --- reading (inbound sync) -------------------------------------------------------------

    def inbox_start(self) -> str:
        """A delta link for "now": the initial delta round (mail received from this second on) is
        walked to its delta link and what it lists is left unread, so only later mail is recorded."""
        since = datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        url = f"{self.base}/mailFolders/inbox/messages/delta"
        params: dict | None = {"$select": DELTA_SELECT, "$filter": f"receivedDateTime ge {since}"}
        for _ in range(MAX_START_PAGES):
            data = self._delta(url, params)
            if data.get("@odata.deltaLink"):
                return str(data["@odata.deltaLink"])
            url, params = self._checked_link(str(data.get("@odata.nextLink") or "")), None
        raise TransientProviderError("Microsoft Graph did not finish the initial delta round; trying again later.")

    def _checked_link(self, link: str) -> str:
        if not link:
            raise PermanentProviderError("Microsoft Graph answered the delta without a next or delta link.")
        if not link.startswith(self.base + "/"):
            # Never send the mailbox's token anywhere but Graph.
            raise PermanentProviderError("The Microsoft Graph delta link is not a Graph URL.")
        return link

    def _delta(self, url: str, params: dict | None) -> dict:
        response = self.http.call("GET", url, params=params, headers=DELTA_PREFER, ok=(200, 410))
        if response.status_code == 410:
            raise InboxCursorExpired("Microsoft Graph no longer has the delta state.")
        return response.json()

    def inbox_page(self, cursor: str) -> InboxPage:
        """One page of the inbox's `messages/delta`; the cursor becomes its next or delta link."""
        data = self._delta(self._checked_link(cursor), None)
        next_link = str(data.get("@odata.nextLink") or "")
        link = self._checked_link(next_link or str(data.get("@odata.deltaLink") or ""))
        items = [
            item
            for item in data.get("value") or []
            if isinstance(item, dict) and item.get("id") and "@removed" not in item and not item.get("isDraft")
        ]
        with_attachments = [item for item in items if item.get("hasAttachments")]
        found = fetch_all(self._attachment_names, with_attachments)
        names = {item["id"]: item_names for item, item_names in zip(with_attachments, found, strict=True)}
        messages = [
            message
            for item in items
            if (message := parse_or_skip(graph_inbound_message, item, attachments=names.get(item["id"], ())))
        ]
        return InboxPage(messages=messages, cursor=link, more=bool(next_link))

    def _attachment_names(self, item: dict) -> tuple[str, ...]:
        response = self.http.call(
            "GET", f"{self._message_url(item['id'])}/attachments", params={"$select": "name"}, ok=(200, 404)
        )
        if response.status_code == 404:
            return ()
        return tuple(str(a.get("name") or "")[:200] for a in response.json().get("value") or [] if a.get("name"))[:50]


def _address(value: object) -> tuple[str, str]:
    email_address = (value or {}).get("emailAddress") if isinstance(value, dict) else None
    if not isinstance(email_address, dict):
        return "", ""
    return str(email_address.get("name") or "")[:200], clean_address(email_address.get("address"))


def graph_inbound_message(item: dict, *, attachments: tuple[str, ...] = ()) -> InboundMessage:
    """A Graph `message` resource (as `DELTA_SELECT` asks for it) as an `InboundMessage`."""
    body = item.get("body") or {}
    content = cut(str(body.get("content") or ""))
    is_html = str(body.get("contentType") or "").lower() == "html"
    sender_name, sender = _address(item.get("from"))
    try:
        occurred_at = datetime.fromisoformat(str(item.get("receivedDateTime")).replace("Z", "+00:00"))
    except ValueError:
        occurred_at = datetime.now(tz=UTC)
    recipients = [_address(r)[1] for r in item.get("toRecipients") or []]
    copies = [_address(r)[1] for r in item.get("ccRecipients") or []]
    return InboundMessage(
        provider_id=str(item["id"]),
        thread_id=str(item.get("conversationId") or "")[:500],
        message_id=bare_message_id(item.get("internetMessageId")),
        references=(),
        from_address=sender,
        from_name=sender_name,
        to=tuple(a for a in recipients if a),
        cc=tuple(a for a in copies if a),
        subject=str(item.get("subject") or "")[:1000],
        text="" if is_html else content,
        html=content if is_html else "",
        occurred_at=occurred_at if occurred_at.tzinfo else occurred_at.replace(tzinfo=UTC),
        attachments=attachments,
    )
