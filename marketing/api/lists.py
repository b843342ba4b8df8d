"""`/api/marketing/lists` and their members: serializers, filters and views. Scopes read/write:marketing."""

from __future__ import annotations

from django.db.models import Count, IntegerField, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers

from axiomatic.api.schema import item_envelope
from axiomatic.api.serializers import ApiModelSerializer, ApiSerializer
from axiomatic.api.viewsets import (
    CreateMixin,
    DestroyOkMixin,
    EntityScopedViewSet,
    ListMixin,
    ParentResource,
    PartialUpdateMixin,
    RetrieveMixin,
)
from marketing.filters import MarketingListFilter, MarketingListMemberFilter
from marketing.models import MarketingList, MarketingListMember
from marketing.services import list_create, list_delete, list_update, member_delete, member_unsubscribe


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


@extend_schema_view(
    list=extend_schema(summary="List marketing lists", description="Ordered by name, then id."),
    create=extend_schema(
        summary="Create a marketing list",
        description="A name already used in the entity (case-insensitively) → 409 with existingId.",
    ),
    retrieve=extend_schema(summary="Get a marketing list"),
    partial_update=extend_schema(
        summary="Update a marketing list",
        description="Changes only the fields sent (name, description). A taken name → 409 with existingId.",
    ),
    destroy=extend_schema(
        summary="Delete a marketing list",
        description='Deletes the list and all its member rows (opt-outs included) → 200 `{"ok": true}`. '
        "The CRM contacts are not touched.",
    ),
)
class MarketingListViewSet(
    ListMixin, CreateMixin, RetrieveMixin, PartialUpdateMixin, DestroyOkMixin, EntityScopedViewSet
):
    queryset = MarketingList.objects.all()
    serializer_class = MarketingListSerializer
    filterset_class = MarketingListFilter
    operation_noun = "MarketingList"  # listMarketingLists, ... (axiomatic.api.openapi)
    item_key = "list"
    list_key = "lists"
    ordering = ("name", "id")

    def narrow_queryset(self, queryset):
        # memberCount in the same query as the lists (a correlated count per list row of the page),
        # so the page and its total stay one query.
        members = (
            MarketingListMember.objects.filter(marketing_list=OuterRef("pk"))
            .order_by()
            .values("marketing_list")
            .annotate(n=Count("id"))
            .values("n")
        )
        return queryset.annotate(member_count=Coalesce(Subquery(members, output_field=IntegerField()), Value(0)))

    def perform_create(self, serializer):
        marketing_list = list_create(entity=self.request.entity, **serializer.validated_data)
        marketing_list.member_count = 0  # a new list has no members; saves re-reading it
        return marketing_list

    def perform_update(self, serializer):
        return list_update(marketing_list=serializer.instance, **serializer.validated_data)

    def perform_destroy(self, instance):
        list_delete(marketing_list=instance)


@extend_schema_view(
    list=extend_schema(
        summary="List a marketing list's members",
        description="Subscribed and unsubscribed members, newest `addedAt` first (ties by id). "
        "404 when the list does not exist in this entity.",
    ),
    destroy=extend_schema(
        summary="Remove a member from a list",
        description='Deletes the member row → 200 `{"ok": true}`. This also forgets an opt-out, so the '
        "contact could be added again later; to keep someone off the list, unsubscribe instead. "
        "404 for a member of another list.",
    ),
)
class MarketingListMemberViewSet(ListMixin, DestroyOkMixin, EntityScopedViewSet):
    queryset = MarketingListMember.objects.all()
    serializer_class = MarketingListMemberSerializer
    filterset_class = MarketingListMemberFilter
    item_key = "member"
    list_key = "members"
    ordering = ("-added_at", "id")
    parent_resource = ParentResource(MarketingList, "listId", field="marketing_list")

    def perform_destroy(self, instance):
        member_delete(member=instance)

    @extend_schema(
        summary="Unsubscribe a member",
        description="Sets `status` to `unsubscribed` and keeps the row, which stops later adds from putting "
        'the contact back on the list. Idempotent → 200 `{"member": {...}}`.',
        request=EmptyBodySerializer,
        responses={200: OpenApiResponse(item_envelope("member", MarketingListMemberSerializer))},
    )
    def unsubscribe(self, request, *args, **kwargs):
        EmptyBodySerializer(data=request.data).is_valid(raise_exception=True)
        return self.wrap(member_unsubscribe(member=self.get_object()))
