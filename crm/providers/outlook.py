"""Microsoft Graph client for Outlook mailboxes: `/me`, and sending through a draft.

`sendMail` answers 202 without an id, so a message is created as a draft (`POST /me/messages`)
and then sent (`POST /me/messages/{id}/send`). Ids are requested immutable
(`Prefer: IdType="ImmutableId"`), so the draft's id is still the message's id once it sits in
Sent Items. The draft id is checkpointed on the email row: a retry after a failed send sends the
same draft again instead of creating a second one, and first asks Graph whether that draft was
in fact already sent (then it only records the id).
"""

from __future__ import annotations

from email.utils import getaddresses
from urllib.parse import quote

from django.conf import settings

from crm.providers.base import (
    Checkpoint,
    Mailbox,
    MailProvider,
    OutgoingMessage,
    PermanentProviderError,
)

IMMUTABLE_IDS = {"Prefer": 'IdType="ImmutableId"'}


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
            "GET", self._message_url(draft_id), params={"$select": "id,isDraft"}, headers=IMMUTABLE_IDS, ok=(200, 404)
        )
        if response.status_code == 404:
            # Neither a draft nor a sent message: deleted in the mailbox. Sending a fresh copy could
            # duplicate one the user already received, so this is final.
            raise PermanentProviderError("Microsoft Graph no longer has the draft of this email.")
        return response.json().get("isDraft") is False

    def send(self, message: OutgoingMessage, *, checkpoint: Checkpoint) -> str:
        draft_id = checkpoint.value
        if draft_id and self._already_sent(draft_id):
            return draft_id
        if not draft_id:
            created = self.http.call(
                "POST", f"{self.base}/messages", json=graph_message(message), headers=IMMUTABLE_IDS, ok=(200, 201)
            )
            draft_id = str(created.json().get("id") or "")
            if not draft_id:
                raise PermanentProviderError("Microsoft Graph created the draft without an id.")
            checkpoint.remember(draft_id)
        self.http.call("POST", f"{self._message_url(draft_id)}/send", headers=IMMUTABLE_IDS, ok=(200, 202, 204))
        return draft_id
