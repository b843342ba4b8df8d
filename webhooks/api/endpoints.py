"""`/api/crm/webhook-endpoints` and their deliveries (webhooks).

Reads need `read:crm`; writes `write:crm` and the admin (or owner) role (`action_roles`). Rules
live in `webhooks.services`; the views validate and translate.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from axiomatic.api.schema import item_envelope
from axiomatic.api.serializers import ApiModelSerializer, ApiSerializer
from axiomatic.api.viewsets import EntityScopedViewSet, ListMixin, ParentResource, RetrieveMixin
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
