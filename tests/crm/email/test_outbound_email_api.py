"""POST /outbound-email validation (every 400/404), GET /outbound-email/{id}, the connections list.

These run with the suite's eager Celery inside the test transaction: on-commit callbacks never
fire here, so nothing is sent; delivery is covered by test_worker.py.
"""

from __future__ import annotations

import uuid

import pytest

from apikeys.models import SCOPES
from crm.choices import ConnectionStatus, EmailStatus, LeadEventKind
from crm.models import Lead, LeadEvent, OutboundEmail, OutboundEmailConnection
from tests import factories
from tests.crm.email.conftest import email_body
from tests.helpers import assert_error

EMAIL_KEYS = {"id", "status", "leadId", "connectionId", "channel", "subject", "to", "cc", "bcc", "createdAt"}
CONNECTION_KEYS = {
    "shared",
    "id",
    "channel",
    "emailAddress",
    "displayName",
    "status",
    "connectedByUserId",
    "createdAt",
    "lastUsedAt",
    # inbound sync (tests/crm/email/test_inbound_api.py)
    "syncEnabled",
    "lastSyncedAt",
    "lastSyncError",
    "syncNeedsReconnect",
}


@pytest.fixture
def gmail(make_connection):
    return make_connection("gmail")


def test_queues_email_with_contact_default_recipient_and_records_timeline(api, lead, gmail, user):
    response = api.post(
        "/outbound-email", email_body(lead, gmail, htmlBody='<p onclick="x()">Hi<script>1</script></p>')
    )

    assert response.status_code == 202, response.content
    data = response.json()["email"]
    assert set(data) >= EMAIL_KEYS
    assert data["status"] == "queued"
    assert data["leadId"] == str(lead.pk) and data["connectionId"] == str(gmail.pk)
    assert data["channel"] == "gmail" and data["subject"] == "Following up"
    assert data["to"] == ["carol@customer.example"] and data["cc"] == [] and data["bcc"] == []
    assert data["createdAt"].endswith("Z")

    row = OutboundEmail.objects.get(pk=data["id"])
    assert row.status == EmailStatus.QUEUED and row.attempts == 0
    assert row.html_body == "<p>Hi</p>"
    assert row.text_body == "Hi"
    assert row.from_address == gmail.email_address
    assert row.created_by == user
    event = LeadEvent.objects.get(lead=lead, kind=LeadEventKind.EMAIL_QUEUED)
    assert event.data["id"] == data["id"] and event.actor_type == "apiKey"


def test_keeps_given_text_body_and_normalises_recipients(api, lead, gmail):
    body = email_body(
        lead,
        gmail,
        to=["Carol Buyer <Carol@Customer.EXAMPLE>", "carol@customer.example", "zed@example.org"],
        cc=['"Smith, J" <j@example.org>'],
        textBody="Plain words",
    )
    data = api.post("/outbound-email", body).json()["email"]
    assert data["to"] == ["Carol Buyer <Carol@customer.example>", "zed@example.org"]
    assert data["cc"] == ['"Smith, J" <j@example.org>']
    assert OutboundEmail.objects.get(pk=data["id"]).text_body == "Plain words"


def test_get_outbound_email_shows_status_fields(api, lead, gmail):
    created = api.post("/outbound-email", email_body(lead, gmail)).json()["email"]
    response = api.get(f"/outbound-email/{created['id']}")
    assert response.status_code == 200
    data = response.json()["email"]
    assert data["status"] == "queued"
    assert data["providerMessageId"] is None and data["sentAt"] is None and data["error"] is None
    assert data["attempts"] == 0


def test_get_outbound_email_of_another_entity_is_404(api, other_api, lead, gmail):
    created = api.post("/outbound-email", email_body(lead, gmail)).json()["email"]
    assert_error(other_api.get(f"/outbound-email/{created['id']}"), 404)
    assert_error(api.get(f"/outbound-email/{uuid.uuid4()}"), 404)


@pytest.mark.parametrize("field", ["leadId", "connectionId"])
def test_unknown_lead_or_connection_is_404(api, lead, gmail, field):
    response = api.post("/outbound-email", email_body(lead, gmail, **{field: str(uuid.uuid4())}))
    assert_error(response, 404)
    assert not OutboundEmail.objects.exists()


def test_lead_and_connection_of_another_entity_are_404(api, lead, gmail, other_entity, make_connection):
    foreign_connection = make_connection("gmail", entity=other_entity, address="x@gmail.example")
    foreign_lead = Lead.objects.create(
        entity=other_entity,
        title="Theirs",
        stage=factories.stage(other_entity, "new"),
        currency="USD",
        probability_pct=0,
    )
    assert_error(api.post("/outbound-email", email_body(lead, foreign_connection)), 404)
    assert_error(api.post("/outbound-email", email_body(foreign_lead, gmail)), 404)


def test_channel_not_matching_connection_is_400(api, lead, gmail):
    body = assert_error(api.post("/outbound-email", email_body(lead, gmail, channel="outlook")), 400)
    assert "channel" in body["details"]


def test_unknown_channel_is_400(api, lead, gmail):
    assert_error(api.post("/outbound-email", email_body(lead, gmail, channel="pigeon")), 400)


@pytest.mark.parametrize("status", [ConnectionStatus.EXPIRED, ConnectionStatus.REVOKED])
def test_inactive_connection_is_400(api, lead, gmail, status):
    OutboundEmailConnection.objects.filter(pk=gmail.pk).update(status=status)
    body = assert_error(api.post("/outbound-email", email_body(lead, gmail)), 400)
    assert "connectionId" in body["details"]


@pytest.mark.parametrize(
    "field,value",
    [
        ("to", ["not an address"]),
        ("to", ["bob@"]),
        ("to", ["a@b.com, c@d.com"]),
        ("to", ["x@localhost-without-dot"]),
        ("to", ["a@b.com\r\nBcc: victim@example.com"]),
        ("cc", ["<>"]),
        ("bcc", ["Bob <bob@x.org> junk"]),
        ("to", [42]),
        ("to", "carol@customer.example"),
    ],
)
def test_invalid_recipient_is_400(api, lead, gmail, field, value):
    body = assert_error(api.post("/outbound-email", email_body(lead, gmail, **{field: value})), 400)
    assert field in body.get("details", {}), body
    assert not OutboundEmail.objects.exists()


@pytest.mark.parametrize(
    "subject",
    [
        "Hello\r\nBcc: victim@example.com",
        "Hello\nthere",
        "Bell\x07",
        "Tab\there",
        "Line\u2028sep",
        "x" * 256,
        "   ",
        "",
    ],
)
def test_bad_subject_is_400(api, lead, gmail, subject):
    body = assert_error(api.post("/outbound-email", email_body(lead, gmail, subject=subject)), 400)
    assert "subject" in body["details"]


def test_subject_of_255_characters_is_accepted(api, lead, gmail):
    assert api.post("/outbound-email", email_body(lead, gmail, subject="é" * 255)).status_code == 202


def test_no_recipient_when_lead_contact_has_no_email_is_400(api, entity, gmail):
    lead = Lead.objects.create(
        entity=entity,
        title="No contact",
        contact=factories.make_contact(entity),
        stage=factories.stage(entity, "new"),
        currency="USD",
        probability_pct=0,
    )
    body = assert_error(api.post("/outbound-email", email_body(lead, gmail)), 400)
    assert "to" in body["details"]


@pytest.mark.parametrize("missing", ["leadId", "connectionId", "channel", "subject", "htmlBody"])
def test_missing_required_field_is_400(api, lead, gmail, missing):
    body = email_body(lead, gmail)
    del body[missing]
    assert missing in assert_error(api.post("/outbound-email", body), 400)["details"]


def test_unknown_field_and_malformed_ids_are_400(api, lead, gmail):
    assert "from" in assert_error(api.post("/outbound-email", email_body(lead, gmail, **{"from": "x"})), 400)["details"]
    assert_error(api.post("/outbound-email", email_body(lead, gmail, leadId="nope")), 400)


def test_auth_and_scopes(make_api, lead, gmail, entity):
    anonymous = make_api()
    anonymous.secret = None
    assert_error(anonymous.post("/outbound-email", email_body(lead, gmail)), 401)
    read_only = make_api(scopes=("read:crm",))
    assert_error(read_only.post("/outbound-email", email_body(lead, gmail)), 403)
    write_only = make_api(scopes=("write:crm",))
    assert_error(write_only.get("/outbound-email-connections"), 403)
    assert make_api(scopes=SCOPES).get("/outbound-email-connections").status_code == 200


def test_connections_list_has_contract_fields_and_never_tokens(api, other_api, make_connection, fake_provider, user):
    gmail = make_connection("gmail")
    outlook = make_connection("outlook")
    response = api.get("/outbound-email-connections")

    assert response.status_code == 200
    data = response.json()
    assert [c["id"] for c in data["connections"]] == [str(gmail.pk), str(outlook.pk)]
    assert data["total"] == 2
    first = data["connections"][0]
    assert set(first) == CONNECTION_KEYS
    assert first["channel"] == "gmail" and first["status"] == "active"
    assert first["connectedByUserId"] == str(user.pk)
    content = response.content.decode()
    for connection in (gmail, outlook):
        for secret in (connection.access_token, connection.refresh_token):
            assert secret and secret not in content
        assert connection.access_token_encrypted not in content
    assert other_api.get("/outbound-email-connections").json()["connections"] == []


def test_email_responses_never_contain_tokens(api, lead, gmail):
    created = api.post("/outbound-email", email_body(lead, gmail))
    shown = api.get(f"/outbound-email/{created.json()['email']['id']}")
    for response in (created, shown):
        assert gmail.access_token not in response.content.decode()
        assert gmail.refresh_token not in response.content.decode()


def test_schema_documents_outbound_email_and_idempotency_key(client, db):
    schema = client.get("/api/schema", {"format": "json"}).json()
    post = schema["paths"]["/api/crm/outbound-email"]["post"]
    assert "202" in post["responses"]
    for path in ("/api/crm/outbound-email", "/api/crm/companies"):
        headers = [p["name"] for p in schema["paths"][path]["post"]["parameters"] if p["in"] == "header"]
        assert "Idempotency-Key" in headers, path
    get_params = schema["paths"]["/api/crm/companies"]["get"]["parameters"]
    assert "Idempotency-Key" not in [p["name"] for p in get_params]
    assert "/api/crm/outbound-email-connections" in schema["paths"]
    assert "/api/crm/outbound-email/{emailId}" in schema["paths"]


def test_text_only_email_is_accepted_and_empty_content_is_400(api, lead, gmail):
    text_only = api.post("/outbound-email", email_body(lead, gmail, htmlBody="", textBody="Just text"))
    assert text_only.status_code == 202
    row = OutboundEmail.objects.get(pk=text_only.json()["email"]["id"])
    assert (row.html_body, row.text_body) == ("", "Just text")
    scripted_only = email_body(lead, gmail, htmlBody="<script>alert(1)</script>")
    assert "htmlBody" in assert_error(api.post("/outbound-email", scripted_only), 400)["details"]
