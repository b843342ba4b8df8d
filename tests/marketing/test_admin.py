"""The marketing admin: the unsubscribe action goes through the service and keeps the rows."""

from __future__ import annotations

import pytest

from marketing.models import MarketingListMember, MemberStatus
from tests import factories

pytestmark = pytest.mark.django_db


def test_unsubscribe_selected_keeps_the_rows_marked_unsubscribed(staff_client, entity):
    newsletter = factories.make_list(entity, "Newsletter")
    chosen = [
        factories.make_list_member(newsletter, factories.make_contact(entity, email=f"gone{n}@example.com"))
        for n in range(2)
    ]
    untouched = factories.make_list_member(newsletter, factories.make_contact(entity, email="stays@example.com"))

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
