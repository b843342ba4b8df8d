"""Outbound email API: `/outbound-email-connections` and `/outbound-email`."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from axiomatic.api.schema import ErrorSerializer, item_envelope
from axiomatic.api.serializers import ApiModelSerializer, ApiSerializer, StrictUUIDField
from axiomatic.api.viewsets import EntityScopedViewSet, ListMixin, PartialUpdateMixin, RetrieveMixin
from axiomatic.roles import ADMIN
from crm.choices import EmailChannel
from crm.email.connections import connection_share
from crm.email.queue import email_queue, recipients_ensure_few
from crm.models import Lead, OutboundEmail, OutboundEmailConnection
from crm.services.actors import Actor


class OutboundEmailConnectionSerializer(ApiModelSerializer):
    """A connected mailbox. Tokens are not fields of this serializer, on purpose."""

    connected_by_user_id = serializers.UUIDField(source="connected_by_id", read_only=True, allow_null=True)

    class Meta:
        model = OutboundEmailConnection
        fields = [
            "id",
            "channel",
            "email_address",
            "display_name",
            "status",
            "connected_by_user_id",
            "created_at",
            "last_used_at",
            "shared",
        ]
        read_only_fields = [name for name in fields if name != "shared"]
        extra_kwargs = {
            "shared": {
                "help_text": "Every member may send through a shared mailbox; a personal one only its owner "
                "(and admins). Changing it needs the admin role."
            }
        }


class OutboundEmailSerializer(ApiModelSerializer):
    lead_id = serializers.UUIDField(read_only=True, allow_null=True)
    connection_id = serializers.UUIDField(read_only=True, allow_null=True)
    contact_id = serializers.UUIDField(read_only=True, allow_null=True)
    to = serializers.ListField(source="to_addresses", child=serializers.CharField(), read_only=True)
    cc = serializers.ListField(source="cc_addresses", child=serializers.CharField(), read_only=True)
    bcc = serializers.ListField(source="bcc_addresses", child=serializers.CharField(), read_only=True)
    provider_message_id = serializers.SerializerMethodField(method_name="get_provider_message_id")
    error = serializers.SerializerMethodField(method_name="get_error")

    class Meta:
        model = OutboundEmail
        fields = [
            "id",
            "status",
            "lead_id",
            "contact_id",
            "connection_id",
            "channel",
            "from_address",
            "subject",
            "to",
            "cc",
            "bcc",
            "html_body",
            "text_body",
            "provider_message_id",
            "sent_at",
            "error",
            "attempts",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_provider_message_id(self, email: OutboundEmail) -> str | None:
        return email.provider_message_id or None

    def get_error(self, email: OutboundEmail) -> str | None:
        return email.error or None


class OutboundEmailCreateSerializer(ApiSerializer):
    """The request body; rules that need the lead or the connection are checked by the service."""

    lead_id = StrictUUIDField()
    connection_id = StrictUUIDField()
    channel = serializers.ChoiceField(choices=EmailChannel.choices)
    subject = serializers.CharField(trim_whitespace=False, allow_blank=True, help_text="At most 255 characters.")
    html_body = serializers.CharField(trim_whitespace=False, allow_blank=True, help_text="Sanitised before sending.")
    text_body = serializers.CharField(
        trim_whitespace=False,
        allow_blank=True,
        required=False,
        allow_null=True,
        help_text="Plain-text part; derived from htmlBody when absent.",
    )
    to = serializers.ListField(
        child=serializers.CharField(trim_whitespace=False),
        required=False,
        allow_null=True,
        help_text="Default: the lead's contact's email.",
    )
    cc = serializers.ListField(child=serializers.CharField(trim_whitespace=False), required=False, allow_null=True)
    bcc = serializers.ListField(child=serializers.CharField(trim_whitespace=False), required=False, allow_null=True)

    def to_internal_value(self, data):
        if isinstance(data, dict):
            # Count the addresses before a single one is read: a megabyte of them costs nothing.
            lists = [data.get(key) for key in ("to", "cc", "bcc")]
            recipients_ensure_few(*(value if isinstance(value, list) else None for value in lists))
        return super().to_internal_value(data)


@extend_schema_view(
    list=extend_schema(
        summary="List connected mailboxes",
        description="Mailboxes connected through OAuth consent at /crm/connections. Tokens are never returned.",
    ),
    partial_update=extend_schema(
        summary="Share or unshare a mailbox",
        description="Body `{shared}`. Admins and owners only (403 naming the role otherwise). A shared mailbox "
        "may be used by every member to send; a personal one by who connected it and by admins.",
    ),
)
class OutboundEmailConnectionViewSet(ListMixin, PartialUpdateMixin, EntityScopedViewSet):
    queryset = OutboundEmailConnection.objects.all()
    serializer_class = OutboundEmailConnectionSerializer
    item_key = "connection"
    list_key = "connections"
    ordering = ("created_at", "id")
    action_roles = {"partial_update": ADMIN}

    def perform_update(self, serializer):
        shared = serializer.validated_data.get("shared", serializer.instance.shared)
        return connection_share(connection=serializer.instance, shared=shared)


@extend_schema_view(
    retrieve=extend_schema(
        summary="Get an outbound email",
        description="Its current status: queued → sending → sent (providerMessageId, sentAt) or failed "
        "(error, attempts).",
    ),
)
class OutboundEmailViewSet(RetrieveMixin, EntityScopedViewSet):
    queryset = OutboundEmail.objects.all()
    serializer_class = OutboundEmailSerializer
    item_key = "email"
    list_key = "emails"
    ordering = ("-created_at", "id")

    def get_serializer_class(self):
        if self.action == "create":
            return OutboundEmailCreateSerializer
        return OutboundEmailSerializer

    @extend_schema(
        summary="Send an email about a lead",
        description="Validates everything, stores the email as `queued` and answers 202; a worker sends it through "
        "the connection's provider after the request commits. Unknown lead or connection → 404; channel not the "
        "connection's, inactive connection, invalid address, bad subject or no recipient → 400.",
        request=OutboundEmailCreateSerializer,
        responses={
            202: item_envelope("email", OutboundEmailSerializer),
            404: OpenApiResponse(ErrorSerializer, description="Unknown lead or connection in this entity."),
        },
    )
    def create(self, request, *args, **kwargs):
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        entity = request.entity
        lead = Lead.objects.for_entity(entity).select_related("contact").filter(pk=data["lead_id"]).first()
        if lead is None:
            raise exceptions.NotFound("No lead with that id exists in this entity.")
        connection = OutboundEmailConnection.objects.for_entity(entity).filter(pk=data["connection_id"]).first()
        if connection is None:
            raise exceptions.NotFound("No outbound email connection with that id exists in this entity.")
        email = email_queue(
            entity=entity,
            lead=lead,
            connection=connection,
            channel=data["channel"],
            subject=data["subject"],
            html_body=data["html_body"],
            text_body=data.get("text_body"),
            to=data.get("to"),
            cc=data.get("cc"),
            bcc=data.get("bcc"),
            actor=Actor.from_request(request),
            sender=request.membership,
        )
        return Response({"email": OutboundEmailSerializer(email).data}, status=status.HTTP_202_ACCEPTED)
