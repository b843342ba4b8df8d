"""Registers the marketing serializers as the representation the change feed records, and the
marketing feed objects (`axiomatic.changes`)."""

from __future__ import annotations

from axiomatic.changes import register_object_type
from axiomatic.representations import register_representation
from marketing.api.serializers import MarketingListMemberSerializer, MarketingListSerializer
from marketing.models import MarketingList, MarketingListMember


def _list(marketing_list: MarketingList) -> dict:
    if not hasattr(marketing_list, "member_count"):  # loaded without the count (not through the view)
        marketing_list.member_count = MarketingListMember.objects.filter(marketing_list_id=marketing_list.pk).count()
    return dict(MarketingListSerializer(marketing_list).data)


def register() -> None:
    register_representation(MarketingList, _list)
    register_representation(
        MarketingListMember,
        lambda member: dict(MarketingListMemberSerializer(member).data),
        many=lambda members: [dict(item) for item in MarketingListMemberSerializer(members, many=True).data],
    )
    register_object_type(MarketingList, "marketing_list")
    register_object_type(MarketingListMember, "marketing_list_member")
