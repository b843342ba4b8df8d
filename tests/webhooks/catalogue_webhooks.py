"""Prints one real change body per event type, for the catalogue in docs/webhooks.md.

Not collected by the suite; run it on purpose:

    .venv/bin/pytest tests/webhooks/catalogue_webhooks.py -s -p no:cacheprovider
"""

from __future__ import annotations

import json

from axiomatic.changes import event_types
from crm.email.delivery import email_mark_failed
from crm.models import OutboundEmail
from tests.helpers import ApiClient
from webhooks.services import build_test_event


def test_print_the_catalogue(api, entity, numbered):
    marketing = ApiClient(api.client, secret=api.secret, entity=entity, user=api.user, prefix="/api/marketing")
    company = api.post("/companies", {"name": "Acme GmbH", "domain": "acme.example", "country": "DE"}).json()
    company_id = company["company"]["id"]
    api.patch(f"/companies/{company_id}", {"role": "customer"})
    contact = api.post(
        "/contacts", {"firstName": "Carol", "lastName": "Jones", "email": "carol@acme.example", "companyId": company_id}
    ).json()["contact"]
    api.patch(f"/contacts/{contact['id']}", {"title": "CTO"})
    membership = api.get(f"/contacts/{contact['id']}/company-memberships").json()["memberships"][0]
    api.patch(
        f"/contacts/{contact['id']}/company-memberships/{membership['id']}", {"title": "Chief Technology Officer"}
    )
    lead = api.post("/leads", {"title": "Acme rollout", "value": "12000.00", "companyId": company_id}).json()["lead"]
    api.patch(f"/leads/{lead['id']}", {"value": "15000.00"})
    api.patch(f"/leads/{lead['id']}/stage", {"stage": "qualified"})
    activity = api.post(
        f"/leads/{lead['id']}/activities",
        {"type": "task", "subject": "Send the proposal", "dueAt": "2030-01-15T09:00:00Z"},
    ).json()["activity"]
    api.patch(f"/activities/{activity['id']}", {"status": "completed"})
    stage = api.post("/pipeline-stages", {"name": "Trial", "colorKey": "teal"}).json()["stage"]
    api.patch(f"/pipeline-stages/{stage['id']}", {"defaultProbabilityPct": 50})
    listing = marketing.post("/lists", {"name": "Newsletter"}).json()["list"]
    marketing.patch(f"/lists/{listing['id']}", {"description": "Monthly product news"})
    api.post("/prospecting/add-to-marketing-list", {"listId": listing["id"], "contactIds": [contact["id"]]})
    member = marketing.get(f"/lists/{listing['id']}/members").json()["members"][0]
    marketing.post(f"/lists/{listing['id']}/members/{member['id']}/unsubscribe", {})
    connection = factories_connection(entity, api.user)
    email = api.post(
        "/outbound-email",
        {
            "leadId": lead["id"],
            "connectionId": str(connection.pk),
            "channel": "gmail",
            "subject": "Your proposal",
            "htmlBody": "<p>Hello Carol</p>",
            "to": ["carol@acme.example"],
        },
    ).json()["email"]
    email_mark_failed(
        email=OutboundEmail.objects.get(pk=email["id"]), token=None, reason="The mailbox is disconnected."
    )
    sent = OutboundEmail.objects.create(
        **{
            k: v
            for k, v in OutboundEmail.objects.filter(pk=email["id"]).values()[0].items()
            if k not in ("id", "status", "error", "created_at", "updated_at", "claim_token")
        }
    )
    _mark_sent_for_catalogue(sent)
    marketing.delete(f"/lists/{listing['id']}/members/{member['id']}")
    marketing.delete(f"/lists/{listing['id']}")
    api.delete(f"/activities/{activity['id']}")
    api.delete(f"/contacts/{contact['id']}/company-memberships/{membership['id']}")
    api.delete(f"/leads/{lead['id']}")
    api.delete(f"/pipeline-stages/{stage['id']}")
    api.delete(f"/contacts/{contact['id']}")

    page = api.get("/changes", {"limit": 500}).json()
    first = {}
    for change in page["changes"]:
        first.setdefault(change["type"], change)
    for name in event_types():
        if name in first:
            print(f"\n#### `{name}`\n\n```json\n{json.dumps(first[name], indent=2)}\n```")
        else:
            print(f"\n#### `{name}` — (not produced by this script)")
    endpoint_event = build_test_event(_endpoint(entity))
    print(f"\n#### `webhook.test`\n\n```json\n{json.dumps(endpoint_event, indent=2)}\n```")


def factories_connection(entity, user):
    from datetime import timedelta

    from django.utils import timezone

    from crm.choices import EmailChannel
    from crm.models import OutboundEmailConnection

    connection = OutboundEmailConnection(
        entity=entity, channel=EmailChannel.GMAIL, email_address="sales@acme-crm.example", connected_by=user
    )
    connection.set_tokens(access_token="a", refresh_token="r", expires_at=timezone.now() + timedelta(hours=1))
    connection.save()
    return connection


def _mark_sent_for_catalogue(email):
    import uuid

    from crm.email.delivery import _mark_sent

    token = uuid.uuid4()
    OutboundEmail.objects.filter(pk=email.pk).update(status="sending", claim_token=token, attempts=1)
    email.refresh_from_db()
    _mark_sent(email, token, "<provider-message-id@mail.example>")


def _endpoint(entity):
    from webhooks.models import WebhookEndpoint

    endpoint = WebhookEndpoint(entity=entity, url="https://hooks.example.com/crm")
    endpoint.set_secret("whsec_" + "A" * 44)
    endpoint.save()
    return endpoint
