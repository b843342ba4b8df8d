"""The marketing admin: the unsubscribe action goes through the service and keeps the rows."""

from __future__ import annotations

import pytest
from django.test import Client

from marketing.models import MarketingList, MarketingListMember, MemberSource, MemberStatus
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(db):
    staff = factories.make_user(name="Staff Person")
    staff.is_staff = staff.is_superuser = True
    staff.save()
    client = Client()
    client.force_login(staff)
    return client


def add_member(marketing_list, contact) -> MarketingListMember:
    return MarketingListMember.objects.create(
        entity_id=marketing_list.entity_id,
        marketing_list=marketing_list,
        contact=contact,
        email=contact.email,
        status=MemberStatus.SUBSCRIBED,
        source=MemberSource.ADMIN,
    )


def test_unsubscribe_selected_keeps_the_rows_marked_unsubscribed(staff_client, entity):
    newsletter = MarketingList.objects.create(entity=entity, name="Newsletter")
    chosen = [add_member(newsletter, factories.make_contact(entity, email=f"gone{n}@example.com")) for n in range(2)]
    untouched = add_member(newsletter, factories.make_contact(entity, email="stays@example.com"))

    response = staff_client.post(
        "/admin/marketing/marketinglistmember/",
        {"action": "unsubscribe_selected", "_selected_action": [str(member.pk) for member in chosen]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Unsubscribed 2 member(s)." in [str(m) for m in response.context["messages"]]

    assert MarketingListMember.objects.filter(marketing_list=newsletter).count() == 3
    for member in chosen:
        member.refresh_from_db()
        assert member.status == MemberStatus.UNSUBSCRIBED
        assert member.unsubscribed_at is not None
        assert member.contact_id is not None and member.email.startswith("gone")
    untouched.refresh_from_db()
    assert (untouched.status, untouched.unsubscribed_at) == (MemberStatus.SUBSCRIBED, None)

    # Idempotent: a second run keeps the first unsubscription time.
    first = {member.pk: member.unsubscribed_at for member in chosen}
    staff_client.post(
        "/admin/marketing/marketinglistmember/",
        {"action": "unsubscribe_selected", "_selected_action": [str(member.pk) for member in chosen]},
    )
    for member in chosen:
        member.refresh_from_db()
        assert member.unsubscribed_at == first[member.pk]
