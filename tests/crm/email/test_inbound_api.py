"""The inbound sync on the connection API and on /crm/connections: fields, PATCH, POST …/sync."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from crm.choices import ConnectionStatus
from crm.email.delivery import email_deliver
from crm.models import OutboundEmailConnection
from tests import factories
from tests.crm.email.conftest import connect_through_browser, make_email
from tests.crm.email.inbound_support import connect_mailbox, sync_now

OLD_GMAIL_SCOPE = "https://www.googleapis.com/auth/gmail.compose"


def test_connections_show_their_sync_state(api, fake_provider, entity, user):
    connection = connect_mailbox(fake_provider, entity=entity, user=user)
    (shown,) = api.get("/outbound-email-connections").json()["connections"]
    assert shown["syncEnabled"] is True
    assert shown["lastSyncedAt"] is None and shown["lastSyncError"] is None
    assert shown["syncNeedsReconnect"] is False
    for secret in ("syncCursor", "syncLeaseToken", "accessToken"):
        assert secret not in shown

    sync_now(connection)
    (shown,) = api.get("/outbound-email-connections").json()["connections"]
    assert shown["lastSyncedAt"].endswith("Z") and shown["lastSyncError"] is None


def test_a_mailbox_connected_without_the_read_scope_is_asked_to_reconnect(api, browser, fake_provider, entity, user):
    old = connect_mailbox(fake_provider, entity=entity, user=user, scope=OLD_GMAIL_SCOPE)
    (shown,) = api.get("/outbound-email-connections").json()["connections"]
    assert shown["syncNeedsReconnect"] is True
    response = api.post(f"/outbound-email-connections/{old.pk}/sync", {})
    assert response.status_code == 409 and "reconnect" in response.json()["error"]
    assert sync_now(old).outcome == "failed"
    old.refresh_from_db()
    assert "reconnect" in old.last_sync_error
    assert fake_provider.count("GET", "/gmail/v1/users/me/history") == 0

    page = browser.get("/crm/connections", {"entityId": str(entity.pk)}).content.decode()
    assert "data-sync-needs-reconnect" in page and "Reconnect to read replies" in page

    # Connecting again through consent asks for reading (gmail.readonly) and clears it.
    connect_through_browser(browser, fake_provider, "gmail", entity)
    old.refresh_from_db()
    assert "gmail.readonly" in old.granted_scopes and old.can_read_mail
    assert api.get("/outbound-email-connections").json()["connections"][0]["syncNeedsReconnect"] is False


def test_outlook_consent_asks_for_mail_read(browser, fake_provider, entity):
    connect_through_browser(browser, fake_provider, "outlook", entity)
    connection = OutboundEmailConnection.objects.get(entity=entity)
    assert "Mail.Read" in connection.granted_scopes.split()[-1] or "Mail.Read" in connection.granted_scopes
    assert connection.can_read_mail


def test_sync_can_be_turned_off_and_on_per_mailbox(api, fake_provider, entity, user):
    connection = connect_mailbox(fake_provider, entity=entity, user=user)
    response = api.patch(f"/outbound-email-connections/{connection.pk}", {"syncEnabled": False})
    assert response.status_code == 200, response.content
    assert response.json()["connection"]["syncEnabled"] is False
    assert sync_now(connection).outcome == "skipped"
    assert fake_provider.count("GET", "/gmail/v1/users/me/profile") == 0
    refused = api.post(f"/outbound-email-connections/{connection.pk}/sync", {})
    assert refused.status_code == 409 and "turned off" in refused.json()["error"]

    assert api.patch(f"/outbound-email-connections/{connection.pk}", {"syncEnabled": True}).status_code == 200
    assert sync_now(connection).outcome == "synced"


def test_patch_sync_enabled_is_validated_and_needs_the_admin_role(make_api, api, fake_provider, entity, user):
    connection = connect_mailbox(fake_provider, entity=entity, user=user)
    bad = api.patch(f"/outbound-email-connections/{connection.pk}", {"syncEnabled": "sometimes"})
    assert bad.status_code == 400 and "syncEnabled" in bad.json()["details"]
    member = factories.make_member(entity)
    refused = make_api(user=member).patch(f"/outbound-email-connections/{connection.pk}", {"syncEnabled": False})
    assert refused.status_code == 403 and "admin" in refused.json()["error"]
    connection.refresh_from_db()
    assert connection.sync_enabled is True


def test_post_sync_makes_the_mailbox_due_now(api, fake_provider, entity, user, make_api):
    connection = connect_mailbox(fake_provider, entity=entity, user=user)
    sync_now(connection)
    connection.refresh_from_db()
    assert connection.next_sync_at is not None

    response = make_api(user=factories.make_member(entity)).post(
        f"/outbound-email-connections/{connection.pk}/sync", {}
    )
    assert response.status_code == 202, response.content
    assert response.json()["connection"]["id"] == str(connection.pk)
    connection.refresh_from_db()
    assert connection.next_sync_at <= timezone.now()

    assert api.post("/outbound-email-connections/00000000-0000-0000-0000-000000000000/sync", {}).status_code == 404
    unknown = api.post(f"/outbound-email-connections/{connection.pk}/sync", {"now": True})
    assert unknown.status_code == 400 and "now" in unknown.json()["error"]
    unauthenticated = api.client.post(f"/api/crm/outbound-email-connections/{connection.pk}/sync")
    assert unauthenticated.status_code == 401
    read_only = make_api(scopes=("read:crm",)).post(f"/outbound-email-connections/{connection.pk}/sync", {})
    assert read_only.status_code == 403


def test_post_sync_refuses_an_expired_mailbox(api, fake_provider, entity, user):
    connection = connect_mailbox(fake_provider, entity=entity, user=user)
    OutboundEmailConnection.objects.filter(pk=connection.pk).update(status=ConnectionStatus.EXPIRED)
    response = api.post(f"/outbound-email-connections/{connection.pk}/sync", {})
    assert response.status_code == 409 and "expired" in response.json()["error"]


def test_the_connections_page_shows_and_toggles_the_sync(browser, fake_provider, entity, user):
    connection = connect_mailbox(fake_provider, entity=entity, user=user)
    OutboundEmailConnection.objects.filter(pk=connection.pk).update(last_sync_error="Gmail answered 503: Backend Error")
    page = browser.get("/crm/connections", {"entityId": str(entity.pk)}).content.decode()
    assert 'data-sync-enabled="true"' in page and "Gmail answered 503: Backend Error" in page and "Sync now" in page

    response = browser.post(f"/crm/connections/{connection.pk}/sync-enabled?entityId={entity.pk}", {"enabled": "0"})
    assert response.status_code == 302
    connection.refresh_from_db()
    assert connection.sync_enabled is False
    page = browser.get("/crm/connections", {"entityId": str(entity.pk)}).content.decode()
    assert 'data-sync-enabled="false"' in page and "Turn on" in page

    browser.post(f"/crm/connections/{connection.pk}/sync-enabled?entityId={entity.pk}", {"enabled": "1"})
    response = browser.post(f"/crm/connections/{connection.pk}/sync?entityId={entity.pk}")
    assert response.status_code == 302
    connection.refresh_from_db()
    assert connection.sync_enabled is True


def test_another_members_mailbox_sync_cannot_be_turned_off_on_the_page(client, fake_provider, entity, user):
    connection = connect_mailbox(fake_provider, entity=entity, user=user)
    member = factories.make_member(entity)
    client.force_login(member)
    client.post(f"/crm/connections/{connection.pk}/sync-enabled?entityId={entity.pk}", {"enabled": "0"})
    connection.refresh_from_db()
    assert connection.sync_enabled is True


def test_board_and_lead_page_show_the_reply(browser, fake_provider, entity, user, lead):
    from crm.models import Activity

    connection = connect_mailbox(fake_provider, entity=entity, user=user)
    sync_now(connection)
    row = make_email(lead, connection)
    email_deliver(email_id=row.pk)
    row.refresh_from_db()
    long_text = "<script>alert(1)</script> Thanks! " + "More words here. " * 60
    fake_provider.receive_gmail(
        connection.email_address,
        sender="carol@customer.example",
        to=connection.email_address,
        thread_id=row.provider_thread_id,
        text=long_text,
    )
    sync_now(connection)
    Activity.objects.filter(lead=lead, direction="inbound").update(occurred_at=timezone.now() - timedelta(hours=2))

    board = browser.get("/crm/board", {"entityId": str(entity.pk)}).content.decode()
    assert "replied 2 h ago" in board
    page = browser.get(f"/crm/leads/{lead.pk}", {"entityId": str(entity.pk)}).content.decode()
    assert "replied 2 h ago" in page
    assert 'data-event-kind="email_received"' in page
    assert "<details" in page and "data-received-email" in page  # long: collapsed
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
