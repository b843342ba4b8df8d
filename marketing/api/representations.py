"""Registers the marketing serializers as the representation the change feed records, and the
marketing feed objects (`axiomatic.changes`)."""

from __future__ import annotations

import threading

from axiomatic.changes import register_object_type
from axiomatic.representations import register_representation
from marketing.api.lists import MarketingListMemberSerializer, MarketingListSerializer
from marketing.models import MarketingList, MarketingListMember

_local = threading.local()


def _serializer(serializer_class, *, many: bool = False):
    """One bound serializer per class and thread, reused (building the fields is the costly part)."""
    key = (serializer_class, many)
    cache = _local.__dict__.setdefault("serializers", {})
    if key not in cache:
        cache[key] = serializer_class(many=True) if many else serializer_class()
    return cache[key]


def _list(marketing_list: MarketingList) -> dict:
    if not hasattr(marketing_list, "member_count"):  # loaded without the count (not through the view)
        marketing_list.member_count = MarketingListMember.objects.filter(marketing_list_id=marketing_list.pk).count()
    return dict(_serializer(MarketingListSerializer).to_representation(marketing_list))


def register() -> None:
    register_representation(MarketingList, _list)
    register_representation(
        MarketingListMember,
        lambda member: dict(_serializer(MarketingListMemberSerializer).to_representation(member)),
        many=lambda members: [
            dict(item) for item in _serializer(MarketingListMemberSerializer, many=True).to_representation(members)
        ],
    )
    register_object_type(MarketingList, "marketing_list")
    register_object_type(MarketingListMember, "marketing_list_member")
