"""/crm/connections: OAuth consent through the fake provider, the list, disconnect, admin."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.db import connection as db_connection
from django.test import Client

from axiomatic.models import User
from crm.choices import ConnectionStatus
from crm.models import OutboundEmail, OutboundEmailConnection
from tests import factories
from tests.crm.email.conftest import connect_through_browser


def _messages(response) -> list[str]:
    return [str(m) for m in response.wsgi_request._messages]


def test_connect_gmail_through_consent_stores_an_encrypted_connection(browser, fake_provider, entity, user):
    response = connect_through_browser(browser, fake_provider, "gmail", entity)

    assert response.status_code == 302
    assert response["Location"] == f"/crm/connections?entityId={entity.pk}"
    connection = OutboundEmailConnection.objects.get(entity=entity)
    assert connection.channel == "gmail"
    assert connection.email_address == "alice.sales@gmail.example"
    assert connection.status == ConnectionStatus.ACTIVE
    assert connection.connected_by == user
    assert connection.token_expires_at is not None
    assert "gmail.compose" in connection.granted_scopes
    issued = fake_provider.state.seen_tokens
    assert connection.access_token in issued and connection.refresh_token in issued
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT * FROM crm_outboundemailconnection WHERE id = %s", [connection.pk])
        stored = " ".join(str(value) for value in cursor.fetchone())
    for token in issued:
        assert token not in stored  # encrypted at rest

    page = browser.get("/crm/connections", {"entityId": str(entity.pk)})
    assert page.status_code == 200
    content = page.content.decode()
    assert "alice.sales@gmail.example" in content and 'data-status="active"' in content
    for token in issued:
        assert token not in content
    assert connection.access_token_encrypted not in content


def test_connect_outlook_reads_graph_me(browser, fake_provider, entity):
    connect_through_browser(browser, fake_provider, "outlook", entity)
    connection = OutboundEmailConnection.objects.get(entity=entity)
    assert (connection.channel, connection.email_address, connection.display_name) == (
        "outlook",
        "bob.sales@outlook.example",
        "Bob Sales",
    )


def test_outlook_without_mail_uses_user_principal_name(browser, fake_provider, entity):
    fake_provider.state.outlook_identity = {"mail": None, "userPrincipalName": "Bob@Contoso.example", "displayName": ""}
    connect_through_browser(browser, fake_provider, "outlook", entity)
    assert OutboundEmailConnection.objects.get(entity=entity).email_address == "bob@contoso.example"


def test_authorize_redirect_carries_state_pkce_scopes_and_callback(browser, fake_provider, entity):
    response = browser.get("/crm/connections/gmail/connect", {"entityId": str(entity.pk)})
    query = parse_qs(urlsplit(response["Location"]).query)
    assert query["response_type"] == ["code"]
    assert query["client_id"] == ["google-client-id"]
    assert query["redirect_uri"] == ["http://testserver/crm/connections/gmail/callback"]
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]
    assert query["access_type"] == ["offline"]
    assert "https://www.googleapis.com/auth/gmail.compose" in query["scope"][0]
    state = query["state"][0]
    flows = browser.session["email_oauth_flows"]
    assert flows[state]["entityId"] == str(entity.pk) and flows[state]["channel"] == "gmail"


def test_reconnecting_the_same_mailbox_updates_the_row(browser, fake_provider, entity):
    connect_through_browser(browser, fake_provider, "gmail", entity)
    first = OutboundEmailConnection.objects.get(entity=entity)
    OutboundEmailConnection.objects.filter(pk=first.pk).update(status=ConnectionStatus.EXPIRED)

    connect_through_browser(browser, fake_provider, "gmail", entity)
    again = OutboundEmailConnection.objects.get(entity=entity)
    assert again.pk == first.pk
    assert again.status == ConnectionStatus.ACTIVE
    assert again.access_token != first.access_token


def test_callback_with_unknown_state_stores_nothing(browser, fake_provider, entity):
    start = browser.get("/crm/connections/gmail/connect", {"entityId": str(entity.pk)})
    consent = requests.get(start["Location"], allow_redirects=False, timeout=5)
    code = parse_qs(urlsplit(consent.headers["Location"]).query)["code"][0]

    forged = browser.get("/crm/connections/gmail/callback", {"code": code, "state": "forged-state"})
    assert forged.status_code == 302
    assert any("could not be verified" in m for m in _messages(forged))
    assert not OutboundEmailConnection.objects.exists()


def test_callback_state_is_single_use_and_bound_to_the_channel(browser, fake_provider, entity):
    start = browser.get("/crm/connections/gmail/connect", {"entityId": str(entity.pk)})
    consent = requests.get(start["Location"], allow_redirects=False, timeout=5)
    query = urlsplit(consent.headers["Location"]).query

    wrong_channel = browser.get(f"/crm/connections/outlook/callback?{query}")
    assert any("could not be verified" in m for m in _messages(wrong_channel))
    replay = browser.get(f"/crm/connections/gmail/callback?{query}")  # state consumed above
    assert any("could not be verified" in m for m in _messages(replay))
    assert not OutboundEmailConnection.objects.exists()


def test_state_from_another_session_is_rejected(browser, fake_provider, entity, user):
    start = browser.get("/crm/connections/gmail/connect", {"entityId": str(entity.pk)})
    consent = requests.get(start["Location"], allow_redirects=False, timeout=5)
    attacker = Client()
    attacker.force_login(user)
    stolen = attacker.get(consent.headers["Location"].removeprefix("http://testserver"))
    assert any("could not be verified" in m for m in _messages(stolen))
    assert not OutboundEmailConnection.objects.exists()


def test_consent_denied_and_refused_code_store_nothing(browser, fake_provider, entity):
    start = browser.get("/crm/connections/gmail/connect", {"entityId": str(entity.pk)})
    state = parse_qs(urlsplit(start["Location"]).query)["state"][0]
    denied = browser.get("/crm/connections/gmail/callback", {"error": "access_denied", "state": state})
    assert any("did not grant access" in m for m in _messages(denied))

    start = browser.get("/crm/connections/gmail/connect", {"entityId": str(entity.pk)})
    state = parse_qs(urlsplit(start["Location"]).query)["state"][0]
    refused = browser.get("/crm/connections/gmail/callback", {"code": "made-up", "state": state})
    assert refused.status_code == 302
    assert any("invalid_grant" in m for m in _messages(refused))
    assert not OutboundEmailConnection.objects.exists()


def test_unconfigured_provider_does_not_redirect(browser, fake_provider, entity, settings):
    settings.MICROSOFT_OAUTH_CLIENT_ID = ""
    response = browser.get("/crm/connections/outlook/connect", {"entityId": str(entity.pk)})
    assert response["Location"] == f"/crm/connections?entityId={entity.pk}"
    assert any("not configured" in m for m in _messages(response))
    page = browser.get("/crm/connections", {"entityId": str(entity.pk)}).content.decode()
    assert 'data-connect="gmail"' in page and 'data-connect="outlook"' not in page


def test_unknown_channel_is_404(browser, fake_provider, entity):
    assert browser.get("/crm/connections/pigeon/connect", {"entityId": str(entity.pk)}).status_code == 404


def test_pages_need_login_and_membership(client, fake_provider, entity, other_entity, user):
    for path in ("/crm/connections", "/crm/connections/gmail/connect", "/crm/connections/gmail/callback"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    client.force_login(user)
    assert client.get("/crm/connections", {"entityId": str(other_entity.pk)}).status_code == 403
    assert client.get("/crm/connections/gmail/connect", {"entityId": str(other_entity.pk)}).status_code == 403


def test_page_uses_first_membership_without_entity_id(browser, fake_provider, entity, make_connection):
    make_connection("gmail")
    page = browser.get("/crm/connections")
    assert page.status_code == 200 and "alice.sales@gmail.example" in page.content.decode()


def test_disconnect_needs_csrf_then_revokes_locally(fake_provider, entity, user, make_connection):
    connection = make_connection("gmail")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    url = f"/crm/connections/{connection.pk}/disconnect?entityId={entity.pk}"

    assert browser.post(url).status_code == 403
    page = browser.get("/crm/connections", {"entityId": str(entity.pk)})
    token = page.context["csrf_token"]
    response = browser.post(url, {"csrfmiddlewaretoken": str(token)})

    assert response.status_code == 302
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.REVOKED and connection.revoked_at is not None
    assert connection.access_token_encrypted == "" and connection.refresh_token_encrypted == ""
    assert 'data-status="revoked"' in browser.get("/crm/connections", {"entityId": str(entity.pk)}).content.decode()


def test_disconnect_of_another_entitys_connection_is_404(browser, fake_provider, other_entity, make_connection):
    foreign = make_connection("gmail", entity=other_entity, address="theirs@gmail.example")
    response = browser.post(f"/crm/connections/{foreign.pk}/disconnect")
    assert response.status_code == 404
    foreign.refresh_from_db()
    assert foreign.status == ConnectionStatus.ACTIVE


@pytest.fixture
def staff_client(db):
    admin = User.objects.create_superuser("root@example.com", "pw-123456")
    client = Client()
    client.force_login(admin)
    return client


def test_admin_never_shows_tokens(staff_client, fake_provider, make_connection, lead, api):
    connection = make_connection("outlook")
    api.post(
        "/outbound-email",
        {
            "leadId": str(lead.pk),
            "connectionId": str(connection.pk),
            "channel": "outlook",
            "subject": "Hi",
            "htmlBody": "<p>Hi</p>",
        },
    )
    pages = [
        staff_client.get("/admin/crm/outboundemailconnection/"),
        staff_client.get(f"/admin/crm/outboundemailconnection/{connection.pk}/change/"),
        staff_client.get("/admin/crm/outboundemail/"),
        staff_client.get(f"/admin/crm/outboundemail/{OutboundEmail.objects.get().pk}/change/"),
    ]
    for page in pages:
        assert page.status_code == 200
        content = page.content.decode()
        secrets = (
            connection.access_token,
            connection.refresh_token,
            connection.access_token_encrypted,
            connection.refresh_token_encrypted,
        )
        for secret in secrets:
            assert secret and secret not in content
    assert "bob.sales@outlook.example" in pages[1].content.decode()
    assert staff_client.get("/admin/crm/outboundemailconnection/add/").status_code == 403


def test_membership_of_a_second_entity_is_respected(browser, fake_provider, user, entity):
    second = factories.make_entity(name="Second Co", owner=user)
    connect_through_browser(browser, fake_provider, "gmail", second)
    assert OutboundEmailConnection.objects.get().entity_id == second.pk
