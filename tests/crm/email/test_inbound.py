"""Inbound sync against the fake Gmail and Graph APIs over HTTP on 127.0.0.1 (crm.email.inbound)."""

from __future__ import annotations

import pytest

from crm.choices import ActivityDirection, ActivityType
from crm.models import Activity
from tests import factories
from tests.crm.email.inbound_support import connect_mailbox, receive, sync_now

CHANNELS = ["gmail", "outlook"]


@pytest.fixture
def carol(entity):
    company = factories.make_company(entity, name="Customer Inc")
    return factories.make_contact(entity, email="carol@customer.example", first_name="Carol", company=company)


def inbound(entity):
    return Activity.objects.filter(entity=entity, direction=ActivityDirection.INBOUND)


@pytest.mark.parametrize("channel", CHANNELS)
def test_first_sync_starts_from_now(fake_provider, entity, user, carol, channel):
    connection = connect_mailbox(fake_provider, entity=entity, user=user, channel=channel)
    receive(fake_provider, connection, sender="carol@customer.example", to=connection.email_address, subject="Old")

    first = sync_now(connection)
    assert first.outcome == "synced"
    assert inbound(entity).count() == 0

    receive(fake_provider, connection, sender="carol@customer.example", to=connection.email_address, subject="New")
    second = sync_now(connection)
    assert second.outcome == "synced" and second.recorded == 1
    (activity,) = inbound(entity)
    assert activity.subject == "New" and activity.type == ActivityType.EMAIL
    assert activity.contact_id == carol.pk
