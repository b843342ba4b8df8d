"""The email as the lead's timeline records it.

Queueing and delivery both write timeline events about an email (queued, sent, failed) whose
`data` uses the API's field names and formats (camelCase, ISO timestamps, empty values as null)
for a subset of the email, without the bodies. Services must not import the API, so this is
the one place that builds that dict by hand; keep its names in step with
`OutboundEmailSerializer` in `crm/api/email.py`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from crm.models import OutboundEmail


def email_snapshot(email: OutboundEmail) -> dict:
    """The email as the API shows it (camelCase), for timeline events' `data`."""

    def iso(value: datetime | None) -> str | None:
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if value else None

    return {
        "id": str(email.pk),
        "status": email.status,
        "leadId": str(email.lead_id) if email.lead_id else None,
        "connectionId": str(email.connection_id) if email.connection_id else None,
        "channel": email.channel,
        "fromAddress": email.from_address,
        "subject": email.subject,
        "to": list(email.to_addresses),
        "cc": list(email.cc_addresses),
        "bcc": list(email.bcc_addresses),
        "providerMessageId": email.provider_message_id or None,
        "sentAt": iso(email.sent_at),
        "error": email.error or None,
        "attempts": email.attempts,
        "createdAt": iso(email.created_at),
    }
