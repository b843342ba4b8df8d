"""`/api/crm/changes` (the change feed) and `/api/crm/webhook-endpoints` (webhooks).

Reads need `read:crm`; writes `write:crm` and the admin (or owner) role (`action_roles`). Rules
live in `webhooks.services` and `webhooks.feed`; the views validate and translate.
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
from rest_framework.decorators import action
from rest_framework.response import Response

from axiomatic.api.schema import ErrorSerializer, item_envelope
from axiomatic.api.serializers import ApiModelSerializer, ApiSerializer
from axiomatic.api.viewsets import EntityScopedViewSet, ListMixin, ParentResource, RetrieveMixin
from axiomatic.models import Change
from axiomatic.roles import ADMIN
from webhooks import feed
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.services import (
    endpoint_create,
    endpoint_delete,
    endpoint_replay,
    endpoint_rotate_secret,
    endpoint_send_test,
    endpoint_update,
)

DEFAULT_LIMIT = 100
MAX_LIMIT = 500


class Gone(exceptions.APIException):
    status_code = status.HTTP_410_GONE
    default_detail = "Gone."


# --- the change feed ----------------------------------------------------------------------------


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


# --- webhook endpoints --------------------------------------------------------------------------


class WebhookEndpointSerializer(ApiModelSerializer):
    """A URL that receives the entity's changes as Standard Webhooks."""

    url = serializers.CharField(
        max_length=2000,
        help_text="https:// (http:// only when WEBHOOK_ALLOW_HTTP=1); hosts resolving to loopback, private, "
        "link-local or other non-public addresses → 400.",
    )
    event_types = serializers.ListField(
        child=serializers.CharField(max_length=64),
        required=False,
        max_length=feed.MAX_PATTERNS,
        help_text='Event types to deliver, `*` wildcards (`lead.*`); default ["*"].',
    )
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)
    enabled = serializers.BooleanField(required=False, help_text="false pauses delivery; the place is kept.")
    status = serializers.ChoiceField(
        choices=[("active", "Active"), ("disabled", "Disabled")],
        read_only=True,
        help_text="disabled: by a user, by a 410 answer or after the retry schedule ran out.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "event_types", "description", "enabled", "status", "created_at", "updated_at"]
        read_only_fields = ["id", "status", "created_at", "updated_at"]


class WebhookEndpointSecretSerializer(WebhookEndpointSerializer):
    """The endpoint with its signing secret: only in the answer of a create or a rotation."""

    secret = serializers.CharField(read_only=True, help_text="`whsec_` + base64 of 32 random bytes. Shown once.")

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]
        read_only_fields = [*WebhookEndpointSerializer.Meta.read_only_fields, "secret"]


class EmptyBodySerializer(ApiSerializer):
    """No fields (`entityId` is allowed)."""

    class Meta:
        ref_name = "WebhookEmptyBody"


class ReplaySerializer(ApiSerializer):
    from_seq = serializers.IntegerField(
        min_value=1, max_value=feed.MAX_SEQ, help_text="Deliver again every matching change from this seq on."
    )

    class Meta:
        ref_name = "WebhookReplay"


AcceptedSerializer = inline_serializer(
    name="WebhookAccepted",
    fields={"ok": serializers.BooleanField(), "eventId": serializers.CharField(required=False)},
)
ENDPOINT_ID = OpenApiParameter("endpointId", OpenApiTypes.UUID, OpenApiParameter.PATH, description="Endpoint id")
SECRET_ENVELOPE = item_envelope("webhookEndpoint", WebhookEndpointSecretSerializer)


@extend_schema_view(
    list=extend_schema(summary="List webhook endpoints", description="Oldest first."),
    create=extend_schema(
        summary="Create a webhook endpoint",
        description="Admins and owners. The answer holds the signing `secret`, shown only here (and on rotation). "
        "The endpoint receives the changes made from now on.",
        responses={201: SECRET_ENVELOPE},
    ),
    retrieve=extend_schema(summary="Get a webhook endpoint", parameters=[ENDPOINT_ID]),
    partial_update=extend_schema(
        summary="Update a webhook endpoint",
        description="url, eventTypes, description, enabled. Enabling a disabled endpoint delivers everything "
        "since its place.",
        parameters=[ENDPOINT_ID],
    ),
    destroy=extend_schema(
        summary="Delete a webhook endpoint",
        description="Answers the endpoint as it was.",
        parameters=[ENDPOINT_ID],
        responses={200: item_envelope("webhookEndpoint", WebhookEndpointSerializer)},
    ),
)
class WebhookEndpointViewSet(ListMixin, RetrieveMixin, EntityScopedViewSet):
    action_roles = {name: ADMIN for name in ("create", "partial_update", "destroy", "rotate_secret", "test", "replay")}
    queryset = WebhookEndpoint.objects.all()
    serializer_class = WebhookEndpointSerializer
    filter_backends: list = []
    operation_noun = "WebhookEndpoint"
    item_key = "webhookEndpoint"
    list_key = "webhookEndpoints"
    lookup_url_kwarg = "endpointId"
    ordering = ("created_at", "id")

    def create(self, request, *args, **kwargs):
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        endpoint, secret = endpoint_create(entity=request.entity, **body.validated_data)
        return self._with_secret(endpoint, secret, status.HTTP_201_CREATED)

    def partial_update(self, request, *args, **kwargs):
        endpoint = self.get_object()
        body = self.get_serializer(endpoint, data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        return self.wrap(endpoint_update(endpoint=endpoint, **body.validated_data))

    def destroy(self, request, *args, **kwargs):
        endpoint = self.get_object()
        answer = self.wrap(endpoint)
        endpoint_delete(endpoint=endpoint)
        return answer

    @staticmethod
    def _with_secret(endpoint, secret: str, status_code: int) -> Response:
        data = dict(WebhookEndpointSerializer(endpoint).data)
        data["secret"] = secret
        return Response({"webhookEndpoint": data}, status=status_code)

    @extend_schema(
        summary="Rotate a webhook endpoint's secret",
        description="A new secret, answered once; for 24 hours deliveries are signed with the new and the old one.",
        parameters=[ENDPOINT_ID],
        request=EmptyBodySerializer,
        responses={200: SECRET_ENVELOPE},
    )
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, *args, **kwargs):
        endpoint = self.get_object()
        EmptyBodySerializer(data=request.data).is_valid(raise_exception=True)
        endpoint, secret = endpoint_rotate_secret(endpoint=endpoint)
        return self._with_secret(endpoint, secret, status.HTTP_200_OK)

    @extend_schema(
        summary="Send a test event to a webhook endpoint",
        description="Delivers one `webhook.test` change (seq null) now, once, outside the ordered stream; "
        "see the deliveries for the answer.",
        parameters=[ENDPOINT_ID],
        request=EmptyBodySerializer,
        responses={202: AcceptedSerializer},
    )
    @action(detail=True, methods=["post"], url_path="test")
    def test(self, request, *args, **kwargs):
        endpoint = self.get_object()
        EmptyBodySerializer(data=request.data).is_valid(raise_exception=True)
        event_id = endpoint_send_test(endpoint=endpoint)
        return Response({"ok": True, "eventId": event_id}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Replay changes to a webhook endpoint",
        description="Delivers again every matching change from `fromSeq` on, in order, with their original ids. "
        "A fromSeq before the oldest change kept → 400.",
        parameters=[ENDPOINT_ID],
        request=ReplaySerializer,
        responses={202: AcceptedSerializer},
    )
    @action(detail=True, methods=["post"], url_path="replay")
    def replay(self, request, *args, **kwargs):
        endpoint = self.get_object()
        body = ReplaySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        endpoint_replay(endpoint=endpoint, from_seq=body.validated_data["from_seq"])
        return Response({"ok": True}, status=status.HTTP_202_ACCEPTED)


class WebhookDeliverySerializer(ApiModelSerializer):
    """One attempt to deliver one change to the endpoint."""

    error = serializers.SerializerMethodField()
    response_body = serializers.CharField(read_only=True, help_text="The first 4 KB of the answer's body.")

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event_id",
            "event_type",
            "seq",
            "attempt",
            "status",
            "response_status",
            "response_body",
            "error",
            "duration_ms",
            "attempted_at",
            "next_attempt_at",
        ]
        read_only_fields = fields

    def get_error(self, delivery: WebhookDelivery) -> str | None:
        return delivery.error or None


@extend_schema(parameters=[ENDPOINT_ID])
@extend_schema_view(
    list=extend_schema(summary="List a webhook endpoint's deliveries", description="Newest attempt first."),
)
class WebhookDeliveryViewSet(ListMixin, EntityScopedViewSet):
    queryset = WebhookDelivery.objects.all()
    serializer_class = WebhookDeliverySerializer
    filter_backends: list = []
    parent_resource = ParentResource(WebhookEndpoint, "endpointId", field="endpoint")
    operation_noun = "WebhookEndpointDelivery"
    operation_noun_plural = "WebhookEndpointDeliveries"
    item_key = "delivery"
    list_key = "deliveries"
    ordering = ("-attempted_at", "-id")
