"""`/api/crm/changes`: the change feed. Reads need `read:crm`.

The rules (cursors, type patterns, what is visible) live in `webhooks.feed`; the view validates
and translates.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from axiomatic.api.schema import ErrorSerializer
from axiomatic.api.viewsets import EntityScopedViewSet, ListMixin
from axiomatic.models import Change
from webhooks import feed

DEFAULT_LIMIT = 100
MAX_LIMIT = 500


class Gone(exceptions.APIException):
    status_code = status.HTTP_410_GONE
    default_detail = "Gone."


class ChangeActorSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["user", "apiKey", "system"])
    id = serializers.CharField(allow_null=True, help_text="The user's or API key's id; null for the system.")

    class Meta:
        ref_name = "ChangeActor"


class ChangeSerializer(serializers.Serializer):
    """One change of one object (also the body of a webhook)."""

    id = serializers.CharField(help_text="`evt_…`: unique; the `webhook-id` of its deliveries.")
    seq = serializers.IntegerField(
        allow_null=True, help_text="Position in the entity's feed; null only for `webhook.test`."
    )
    type = serializers.CharField(help_text="`<objectType>.<action>`, e.g. `lead.stage_changed`.")
    objectType = serializers.CharField()
    objectId = serializers.CharField()
    occurredAt = serializers.CharField(help_text="When the change was made (RFC 3339, UTC).")
    actor = ChangeActorSerializer()
    data = serializers.DictField(help_text="The object as its GET returns it; `{id}` for deletions.")
    previous = serializers.DictField(
        allow_null=True, help_text="updated and stage_changed: the old value of every key of data that changed."
    )

    class Meta:
        ref_name = "Change"


ChangeListSerializer = inline_serializer(
    name="ChangeList",
    fields={
        "changes": ChangeSerializer(many=True),
        "nextCursor": serializers.CharField(help_text="Send as cursor to continue after this page."),
        "hasMore": serializers.BooleanField(help_text="True when more changes are already there."),
    },
)


@extend_schema_view(
    list=extend_schema(
        summary="Read the change feed",
        description="Changes of the entity in `seq` order. Without `cursor`: from the oldest change kept; "
        "`cursor=latest`: no changes and the cursor of now. Following `nextCursor` never skips nor repeats a "
        "change, also while others write. A cursor older than CHANGES_RETENTION_DAYS → 410.",
        parameters=[
            OpenApiParameter("cursor", OpenApiTypes.STR, description="A nextCursor, or `latest`."),
            OpenApiParameter(
                "types",
                OpenApiTypes.STR,
                description="Comma-separated event types, `*` wildcards (`lead.*,contact.created`).",
            ),
            OpenApiParameter(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                description=f"1–{MAX_LIMIT} (default {DEFAULT_LIMIT}).",
            ),
        ],
        responses={
            200: ChangeListSerializer,
            410: OpenApiResponse(ErrorSerializer, description="The cursor is older than the changes kept."),
        },
    ),
)
class ChangeFeedViewSet(ListMixin, EntityScopedViewSet):
    queryset = Change.objects.all()
    serializer_class = ChangeSerializer
    pagination_class = None
    filter_backends: list = []
    operation_noun = "Change"
    item_key = "change"
    list_key = "changes"
    ordering = ("seq", "id")

    def list(self, request, *args, **kwargs):
        entity_id = request.entity.pk
        params = request.query_params
        limit_text = params.get("limit")
        limit = DEFAULT_LIMIT if limit_text is None else feed.whole_number(limit_text, minimum=1, maximum=MAX_LIMIT)
        if limit is None:
            raise exceptions.ValidationError({"limit": [f"limit must be an integer from 1 to {MAX_LIMIT}."]})
        try:
            patterns = feed.parse_patterns(params.get("types") or "", field="types")
            cursor = params.get("cursor")
            if cursor == feed.CURSOR_LATEST:
                after = feed.max_visible_seq(entity_id)
                return self._answer([], feed.cursor_encode(entity_id, after), False)
            after = feed.cursor_decode(entity_id, cursor) if cursor else feed.pruned_through(entity_id)
        except feed.FeedError as exc:
            if exc.gone:
                raise Gone(exc.message) from None
            raise exceptions.ValidationError({exc.field: [exc.message]}) from None
        page = feed.read(entity_id, after=after, patterns=patterns, limit=limit)
        changes = [feed.change_object(change) for change in page.changes]
        return self._answer(changes, feed.cursor_encode(entity_id, page.next_seq), page.has_more)

    @staticmethod
    def _answer(changes: list, next_cursor: str, has_more: bool) -> Response:
        return Response({"changes": changes, "nextCursor": next_cursor, "hasMore": has_more})
