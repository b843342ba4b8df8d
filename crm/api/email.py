"""Outbound email API: `/outbound-email-connections` and `/outbound-email`."""

from __future__ import annotations

import unicodedata

from django.db import transaction
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from axiomatic.api.openapi import openapi_field
from axiomatic.api.schema import ErrorSerializer, item_envelope
from axiomatic.api.serializers import ApiModelSerializer, ApiSerializer, StrictUUIDField
from axiomatic.api.viewsets import EntityScopedViewSet, ListMixin, PartialUpdateMixin, RetrieveMixin
from axiomatic.roles import ADMIN
from crm.choices import EmailChannel
from crm.email.connections import connection_share
from crm.email.content import MAX_SUBJECT_LENGTH
from crm.email.inbound import connection_request_sync, connection_set_sync, sync_enqueue
from crm.email.queue import MAX_RECIPIENTS, email_queue, recipients_ensure_few
from crm.models import Lead, OutboundEmail, OutboundEmailConnection
from crm.services.actors import Actor


class OutboundEmailConnectionSerializer(ApiModelSerializer):
    """A connected mailbox. Tokens are not fields of this serializer, on purpose."""

    connected_by_user_id = serializers.UUIDField(source="connected_by_id", read_only=True, allow_null=True)
    sync_needs_reconnect = serializers.SerializerMethodField(
        method_name="get_sync_needs_reconnect",
        help_text="True when the mailbox was connected without permission to read mail (before inbound sync "
        "existed): reconnect it at /crm/connections to sync replies.",
    )
    last_sync_error = serializers.SerializerMethodField(
        method_name="get_last_sync_error",
        help_text="Why the last sync failed (retried at the next interval), or a gap it reported "
        '("history expired; mail between … was not read"); null when the last sync went well.',
    )

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
            "sync_enabled",
            "last_synced_at",
            "last_sync_error",
            "sync_needs_reconnect",
        ]
        read_only_fields = [name for name in fields if name not in ("shared", "sync_enabled")]
        extra_kwargs = {
            "shared": {
                "help_text": "Every member may send through a shared mailbox; a personal one only its owner "
                "(and admins). Changing it needs the admin role."
            },
            "sync_enabled": {
                "help_text": "Read replies and received mail from this mailbox every EMAIL_SYNC_INTERVAL_SECONDS "
                "(default true). Off, nothing more is read; on again, the sync resumes where it stopped."
            },
            "last_synced_at": {"help_text": "When the last successful sync ran (null before the first)."},
        }

    def get_sync_needs_reconnect(self, connection: OutboundEmailConnection) -> bool:
        return not connection.can_read_mail

    def get_last_sync_error(self, connection: OutboundEmailConnection) -> str | None:
        return connection.last_sync_error or None


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
            "replied_at",
            "reply_count",
            "error",
            "attempts",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "replied_at": {"help_text": "When the first reply was received (inbound sync); null until then."},
            "reply_count": {"help_text": "How many received messages answer this email."},
        }

    def get_provider_message_id(self, email: OutboundEmail) -> str | None:
        return email.provider_message_id or None

    def get_error(self, email: OutboundEmail) -> str | None:
        return email.error or None


def _bmp_control_class() -> str:
    """The BMP characters `crm.email.content` refuses in a subject (Unicode Cc, Cf, Zl, Zp), as a
    regex class body; escapes of the BMP only, which JSON Schema regexes and Python's agree on."""
    ranges: list[list[int]] = []
    for code in range(0x10000):
        if unicodedata.category(chr(code)) in ("Cc", "Cf", "Zl", "Zp"):
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1][1] = code
            else:
                ranges.append([code, code])
    return "".join(f"\\u{a:04x}" if a == b else f"\\u{a:04x}-\\u{b:04x}" for a, b in ranges)


_CONTROL = _bmp_control_class()
SUBJECT_PATTERN = f"^[^{_CONTROL}]*[^{_CONTROL}\\s][^{_CONTROL}]*$"
_ADDRESSES = {"type": "array", "items": {"type": "string", "format": "email"}, "maxItems": MAX_RECIPIENTS}


class OutboundEmailCreateSerializer(ApiSerializer):
    """The request body; rules that need the lead or the connection are checked by the service."""

    lead_id = StrictUUIDField()
    connection_id = StrictUUIDField()
    channel = serializers.ChoiceField(choices=EmailChannel.choices, help_text="The connection's channel (else 400).")
    subject = openapi_field(
        serializers.CharField(
            trim_whitespace=False,
            max_length=MAX_SUBJECT_LENGTH,
            help_text=f"At most {MAX_SUBJECT_LENGTH} characters, not blank, no line breaks or other control "
            "characters; trimmed.",
        ),
        request={"type": "string", "pattern": SUBJECT_PATTERN},
    )
    html_body = serializers.CharField(
        trim_whitespace=False,
        allow_blank=True,
        help_text="Sanitised before sending. The email needs content: htmlBody or textBody not blank (else 400).",
    )
    text_body = serializers.CharField(
        trim_whitespace=False,
        allow_blank=True,
        required=False,
        allow_null=True,
        help_text="Plain-text part; derived from htmlBody when absent.",
    )
    to = openapi_field(
        serializers.ListField(
            child=serializers.CharField(trim_whitespace=False),
            required=False,
            allow_null=True,
            help_text="Default: the lead's contact's email (400 when the lead has none). Each address plain or as "
            f"`Name <address>`; at most {MAX_RECIPIENTS} addresses in to, cc and bcc together.",
        ),
        request=_ADDRESSES,
    )
    cc = openapi_field(
        serializers.ListField(child=serializers.CharField(trim_whitespace=False), required=False, allow_null=True),
        request=_ADDRESSES,
    )
    bcc = openapi_field(
        serializers.ListField(child=serializers.CharField(trim_whitespace=False), required=False, allow_null=True),
        request=_ADDRESSES,
    )

    class Meta:
        openapi_request = {
            "anyOf": [
                {"properties": {"htmlBody": {"pattern": r"\S"}}},
                {"required": ["textBody"], "properties": {"textBody": {"type": "string", "pattern": r"\S"}}},
            ]
        }

    def to_internal_value(self, data):
        if isinstance(data, dict):
            # Count the addresses before a single one is read: a megabyte of them costs nothing.
            lists = [data.get(key) for key in ("to", "cc", "bcc")]
            recipients_ensure_few(*(value if isinstance(value, list) else None for value in lists))
        return super().to_internal_value(data)


class ConnectionSyncSerializer(ApiSerializer):
    """`POST …/sync` takes no fields (`entityId` is allowed); anything else is a 400 naming it."""

    class Meta:
        ref_name = "OutboundEmailConnectionSyncBody"


@extend_schema_view(
    list=extend_schema(
        summary="List connected mailboxes",
        description="Mailboxes connected through OAuth consent at /crm/connections. Tokens are never returned.",
    ),
    partial_update=extend_schema(
        summary="Share a mailbox, or turn its sync on or off",
        description="Body `{shared?, syncEnabled?}`. Admins and owners only (403 naming the role otherwise). A "
        "shared mailbox may be used by every member to send; a personal one by who connected it and by admins. "
        "`syncEnabled: false` stops reading replies and received mail from it.",
    ),
)
class OutboundEmailConnectionViewSet(ListMixin, PartialUpdateMixin, EntityScopedViewSet):
    queryset = OutboundEmailConnection.objects.all()
    serializer_class = OutboundEmailConnectionSerializer
    operation_noun = "OutboundEmailConnection"  # listOutboundEmailConnections, ... (axiomatic.api.openapi)
    item_key = "connection"
    list_key = "connections"
    ordering = ("created_at", "id")
    action_roles = {"partial_update": ADMIN}

    def perform_update(self, serializer):
        connection = serializer.instance
        data = serializer.validated_data
        if "shared" in data:
            connection = connection_share(connection=connection, shared=data["shared"])
        if "sync_enabled" in data:
            connection = connection_set_sync(connection=connection, enabled=data["sync_enabled"])
        return connection

    @extend_schema(
        operation_id="syncOutboundEmailConnection",
        summary="Sync a mailbox now",
        description="Reads the replies and received mail that arrived since the last sync, now instead of at the "
        "next interval (a Celery worker does it after the request; watch lastSyncedAt and lastSyncError). 409 "
        "when the mailbox is not active, its sync is off, or it must be reconnected to allow reading.",
        request=ConnectionSyncSerializer,
        responses={
            202: item_envelope("connection", OutboundEmailConnectionSerializer),
            409: OpenApiResponse(
                ErrorSerializer, description="The mailbox is not active, its sync is off, or it must be reconnected."
            ),
        },
    )
    @action(detail=True, methods=["post"], url_path="sync", filter_backends=[])
    def sync(self, request, *args, **kwargs):
        connection = self.get_object()
        ConnectionSyncSerializer(data=request.data).is_valid(raise_exception=True)
        connection = connection_request_sync(connection=connection)
        connection_id = str(connection.pk)
        transaction.on_commit(lambda: sync_enqueue(connection_id=connection_id), robust=True)
        return Response(
            {"connection": OutboundEmailConnectionSerializer(connection).data}, status=status.HTTP_202_ACCEPTED
        )


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
    operation_noun = "OutboundEmail"  # getOutboundEmail (axiomatic.api.openapi)
    item_key = "email"
    list_key = "emails"
    ordering = ("-created_at", "id")

    def get_serializer_class(self):
        if self.action == "create":
            return OutboundEmailCreateSerializer
        return OutboundEmailSerializer

    @extend_schema(
        operation_id="sendOutboundEmail",
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
