"""Serializers of `/api/marketing/`."""

from __future__ import annotations

from rest_framework import serializers

from axiomatic.api.serializers import ApiModelSerializer, ApiSerializer
from marketing.models import MarketingList, MarketingListMember


class MarketingListSerializer(ApiModelSerializer):
    """A marketing list."""

    name = serializers.CharField(
        max_length=200, help_text="1–200 characters, trimmed; unique per entity, case-insensitively (else 409)."
    )
    description = serializers.CharField(allow_blank=True, required=False, help_text="Free text; default empty.")
    member_count = serializers.IntegerField(
        read_only=True,
        help_text="Number of member rows on the list, subscribed and unsubscribed alike "
        "(the `total` of `/lists/{id}/members`).",
    )

    class Meta:
        model = MarketingList
        fields = ["id", "name", "description", "member_count", "created_at"]
        read_only_fields = ["id", "created_at"]


class MarketingListMemberSerializer(ApiModelSerializer):
    """A contact on a marketing list, with the address it was added with."""

    contact_id = serializers.UUIDField(
        read_only=True, allow_null=True, help_text="The CRM contact; null once that contact has been deleted."
    )
    email = serializers.EmailField(read_only=True, help_text="The address the member was added with (a snapshot).")

    class Meta:
        model = MarketingListMember
        fields = ["id", "contact_id", "email", "status", "source", "added_at"]
        read_only_fields = fields


class EmptyBodySerializer(ApiSerializer):
    """Routes that take no body still refuse unknown fields (`entityId` is allowed)."""
