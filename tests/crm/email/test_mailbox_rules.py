"""Who may send through which mailbox, sharing, the recipient cap and the daily cap per mailbox."""

from __future__ import annotations

import pytest
from django.test import Client

from axiomatic.models import Membership
from crm.models import OutboundEmail, OutboundEmailConnection
from tests import factories
from tests.crm.email.conftest import email_body
from tests.helpers import assert_error


@pytest.fixture
def member(entity):
    return factories.make_member(entity, role=Membership.Role.MEMBER, name="Mia Member")


@pytest.fixture
def member_api(make_api, member):
    return make_api(user=member)


def test_a_member_cannot_send_through_a_colleagues_personal_mailbox(member_api, make_connection, lead):
    colleagues = make_connection("gmail")  # connected by the owner
    body = assert_error(member_api.post("/outbound-email", email_body(lead, colleagues)), 403)
    assert "admin role" in body["error"]
    assert not OutboundEmail.objects.exists()


def test_a_member_sends_through_a_shared_mailbox(api, member_api, make_connection, lead):
    team = make_connection("gmail")
    assert api.patch(f"/outbound-email-connections/{team.pk}", {"shared": True}).json()["connection"]["shared"]
    response = member_api.post("/outbound-email", email_body(lead, team))
    assert response.status_code == 202, response.content


def test_a_member_sends_through_their_own_mailbox(member_api, make_connection, lead, member, entity):
    own = make_connection("outlook")
    OutboundEmailConnection.objects.filter(pk=own.pk).update(connected_by=member)
    assert member_api.post("/outbound-email", email_body(lead, own)).status_code == 202


def test_an_admin_sends_through_any_mailbox_of_the_entity(make_api, entity, make_connection, lead):
    admin = factories.make_member(entity, role=Membership.Role.ADMIN, name="Ada Admin")
    owners = make_connection("gmail")
    assert make_api(user=admin).post("/outbound-email", email_body(lead, owners)).status_code == 202


def test_only_admins_mark_a_mailbox_shared(member_api, make_connection):
    mailbox = make_connection("gmail")
    body = assert_error(member_api.patch(f"/outbound-email-connections/{mailbox.pk}", {"shared": True}), 403)
    assert "admin role" in body["error"]
    mailbox.refresh_from_db()
    assert mailbox.shared is False


def test_more_than_a_hundred_recipients_are_refused_before_any_is_parsed(api, make_connection, lead):
    mailbox = make_connection("gmail")
    # Not even addresses: refused for their number, so none of them was parsed.
    body = assert_error(api.post("/outbound-email", email_body(lead, mailbox, to=["x"] * 60, bcc=["y"] * 41)), 400)
    assert "At most 100 recipients" in body["error"]
    ok = [f"r{i}@example.com" for i in range(100)]
    assert api.post("/outbound-email", email_body(lead, mailbox, to=ok)).status_code == 202


def test_the_daily_cap_per_mailbox_answers_429_with_retry_after(api, make_connection, lead, settings):
    settings.EMAIL_DAILY_LIMIT_PER_CONNECTION = 2
    capped = make_connection("gmail")
    other = make_connection("outlook")
    for _ in range(2):
        assert api.post("/outbound-email", email_body(lead, capped)).status_code == 202
    response = api.post("/outbound-email", email_body(lead, capped))
    assert_error(response, 429)
    assert 0 < int(response["Retry-After"]) <= 24 * 3600
    assert OutboundEmail.objects.filter(connection=capped).count() == 2
    assert api.post("/outbound-email", email_body(lead, other)).status_code == 202  # another mailbox is not capped


def test_the_connections_page_lets_members_disconnect_only_their_own(entity, member, make_connection):
    owners = make_connection("gmail")
    browser = Client()
    browser.force_login(member)
    page = browser.get(f"/crm/connections?entityId={entity.pk}").content.decode()
    assert "Disconnect" not in page and "data-share-toggle" not in page
    browser.post(f"/crm/connections/{owners.pk}/disconnect?entityId={entity.pk}")
    owners.refresh_from_db()
    assert owners.status == "active"
    browser.post(f"/crm/connections/{owners.pk}/share?entityId={entity.pk}", {"shared": "1"})
    owners.refresh_from_db()
    assert owners.shared is False


def test_the_connections_page_lets_admins_share_and_disconnect_any(entity, user, make_connection):
    mailbox = make_connection("gmail")
    browser = Client()
    browser.force_login(user)  # the entity's owner
    assert "data-share-toggle" in browser.get(f"/crm/connections?entityId={entity.pk}").content.decode()
    browser.post(f"/crm/connections/{mailbox.pk}/share?entityId={entity.pk}", {"shared": "1"})
    mailbox.refresh_from_db()
    assert mailbox.shared is True
    browser.post(f"/crm/connections/{mailbox.pk}/disconnect?entityId={entity.pk}")
    mailbox.refresh_from_db()
    assert mailbox.status == "revoked"
