"""Gmail API client: `users.getProfile` and `users.messages.send` with a raw RFC 2822 message."""

from __future__ import annotations

import base64
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formataddr, formatdate, getaddresses

from django.conf import settings

from crm.providers.base import Checkpoint, Mailbox, MailProvider, OutgoingMessage, PermanentProviderError


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
        message_id = str(response.json().get("id") or "")
        if not message_id:
            # Accepted (2xx) but without an id: it is sent, so this must not be retried.
            return "unknown"
        return message_id
