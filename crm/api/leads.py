"""Leads, their stage moves, timeline and activities: `/api/crm/leads`.

Serializers, filters and thin views. A lead's stage changes only through
`crm.services.leads.lead_move_stage` (via `PATCH /leads/{id}/stage` or a stage sent to
`PATCH /leads/{id}`); lists load the stage with the lead (one join) and the timeline is one page
query plus a count, so the number of queries does not grow with the page size.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.plumbing import build_basic_type
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.fields import SkipField, empty

from axiomatic import errors
from axiomatic.api.openapi import openapi_field
from axiomatic.api.schema import item_envelope
from axiomatic.api.serializers import (
    ApiModelSerializer,
    ApiSerializer,
    EntityMemberField,
    EntityRelatedField,
    MoneyField,
)
from axiomatic.api.viewsets import (
    CreateMixin,
    DestroyOkMixin,
    EntityScopedViewSet,
    ListMixin,
    ParentResource,
    PartialUpdateMixin,
    RetrieveMixin,
)
from axiomatic.currencies import ISO_4217, validate_currency_code
from crm.api.activities import ActivitySerializer
from crm.api.bulk import BulkMixin
from crm.api.custom_fields import CustomFieldsField
from crm.choices import ActorType, LeadEventKind
from crm.filters import LeadFilter
from crm.models import Activity, Company, Contact, Lead, LeadEvent, PipelineStage
from crm.selectors.timeline import TIMELINE_ORDER
from crm.services.activities import UNSET, activity_create
from crm.services.actors import Actor
from crm.services.leads import lead_create, lead_delete, lead_move_stage, lead_update
from crm.services.pipeline import stage_resolve

STAGE_REFERENCE_HELP = (
    "A stage name (case-insensitive) or a system key such as `won`; a name match wins over a system key. "
    "Use either stageId or stage, not both. (Read back as an object, which is ignored if sent.)"
)

# Read-only enums get their own labels so drf-spectacular names each choice set once, without warnings.
_LEAD_STATUS_CHOICES = [("open", "Open lead"), ("won", "Won lead"), ("lost", "Lost lead")]
_STAGE_REF_KIND_CHOICES = [("open", "Open stage"), ("won", "Won stage"), ("lost", "Lost stage")]


# --- serializers --------------------------------------------------------------------------------


class LeadStageSerializer(serializers.Serializer):
    """The lead's stage as embedded in a lead: enough for a board card without another request."""

    id = serializers.UUIDField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=_STAGE_REF_KIND_CHOICES)
    systemKey = serializers.CharField(source="system_key", allow_null=True)


class StageNameField(serializers.CharField):
    """A stage named by name or system key, resolved inside the request's entity (else 400)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 60)
        kwargs.setdefault("help_text", STAGE_REFERENCE_HELP)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            raise serializers.ValidationError("Must be a stage name or system key (a string).")
        return super().to_internal_value(data)

    def run_validation(self, data=empty):
        reference = super().run_validation(data)  # the string, with the CharField's checks
        stage = stage_resolve(entity=self.context["request"].entity, reference=reference)
        if stage is None:
            raise serializers.ValidationError(f"No stage named {reference!r} exists in this entity.")
        return stage


class StageReferenceField(StageNameField):
    """`stage` of a lead: written as a name or system key, read as `{id, name, kind, systemKey}`.

    The object form is the read-only representation, so a client sending a lead back as it read
    it has that `stage` ignored, like every other read-only field.
    """

    strict_json_type = False  # the object form is taken (and ignored); strings are checked below

    def run_validation(self, data=empty):
        if isinstance(data, dict):
            raise SkipField()
        return super().run_validation(data)

    def to_representation(self, value):
        # One serializer for every row of a page: a new one per row would copy its fields each time.
        if not hasattr(self, "_stage_serializer"):
            self._stage_serializer = LeadStageSerializer()
        return self._stage_serializer.to_representation(value)


class StageReferenceFieldExtension(OpenApiSerializerFieldExtension):
    target_class = StageReferenceField

    def map_serializer_field(self, auto_schema, direction):
        if direction == "request":
            return {
                "description": STAGE_REFERENCE_HELP,
                "oneOf": [
                    {**build_basic_type(OpenApiTypes.STR), "minLength": 1, "maxLength": 60, "pattern": r"\S"},
                    {"type": "object", "description": "The stage as read; ignored."},
                ],
            }
        return auto_schema.resolve_serializer(LeadStageSerializer, direction).ref


class LeadSerializer(ApiModelSerializer):
    """A sales opportunity in the pipeline."""

    title = serializers.CharField(max_length=200, help_text="Required, 1–200 characters, trimmed.")
    company_id = EntityRelatedField(model=Company, source="company", allow_null=True, required=False)
    contact_id = EntityRelatedField(model=Contact, source="contact", allow_null=True, required=False)
    stage_id = EntityRelatedField(
        model=PipelineStage,
        source="stage",
        required=False,
        help_text="Default on create: the first open stage. Changing it moves the lead (see PATCH .../stage).",
    )
    stage = StageReferenceField(required=False)
    custom_fields = CustomFieldsField()
    status = serializers.ChoiceField(
        choices=_LEAD_STATUS_CHOICES, source="stage.kind", read_only=True, help_text="The stage's kind."
    )
    value = MoneyField(
        allow_null=True,
        required=False,
        help_text="Money ≥ 0 with at most two decimals; a string or a number on input, a string on output.",
    )
    currency = openapi_field(
        serializers.CharField(
            max_length=3,
            required=False,
            help_text="ISO 4217 code (case-insensitive), stored upper-case; default the entity's currency.",
        ),
        request={"type": "string", "enum": sorted(ISO_4217)},
        response={"type": "string", "enum": sorted(ISO_4217)},
    )
    probability_pct = serializers.IntegerField(
        min_value=0, max_value=100, required=False, help_text="0–100; default the stage's default probability."
    )
    weighted_value = MoneyField(
        read_only=True, allow_null=True, help_text="value × probabilityPct / 100, rounded half up to cents."
    )
    owner_user_id = EntityMemberField(
        source="owner", allow_null=True, required=False, help_text="A member of the entity (else 400)."
    )
    lost_reason = serializers.CharField(
        max_length=500,
        allow_blank=True,
        required=False,
        help_text="Only for leads in a lost stage (else 400); cleared when the lead leaves the lost stage.",
    )

    class Meta:
        model = Lead
        fields = [
            "id",
            "title",
            "company_id",
            "contact_id",
            "stage_id",
            "stage",
            "status",
            "value",
            "currency",
            "probability_pct",
            "weighted_value",
            "expected_close_date",
            "owner_user_id",
            "source",
            "notes",
            "custom_fields",
            "lost_reason",
            "closed_at",
            "stage_changed_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "id",
            "status",
            "weighted_value",
            "closed_at",
            "stage_changed_at",
            "created_at",
            "updated_at",
        ]
        openapi_request = {"not": {"required": ["stageId", "stage"], "properties": {"stage": {"type": "string"}}}}

    def validate_currency(self, value: str) -> str:
        value = value.strip().upper()
        try:
            validate_currency_code(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None
        return value

    def validate(self, attrs):
        if "stageId" in self.initial_data and isinstance(self.initial_data.get("stage"), str):
            raise serializers.ValidationError({"stage": ["Send either stageId or stage, not both."]})
        return attrs


class LeadStageMoveSerializer(ApiSerializer):
    """Where to move a lead: exactly one of stageId or stage."""

    stage_id = EntityRelatedField(model=PipelineStage, required=False, help_text="The target stage's id.")
    stage = StageNameField(required=False)
    probability_pct = serializers.IntegerField(
        min_value=0,
        max_value=100,
        required=False,
        allow_null=True,
        help_text="Default: the target stage's default probability.",
    )
    lost_reason = serializers.CharField(
        max_length=500,
        required=False,
        allow_blank=True,
        help_text="Only when moving to a lost stage (else 400).",
    )

    class Meta:
        openapi_request = {"oneOf": [{"required": ["stageId"]}, {"required": ["stage"]}]}

    def validate(self, attrs):
        given = [name for name in ("stageId", "stage") if name in self.initial_data]
        if len(given) != 1:
            raise serializers.ValidationError({"stageId": ["Send exactly one of stageId or stage."]})
        attrs["target"] = attrs.pop("stage_id", None) or attrs.pop("stage", None)
        return attrs


class TimelineActorSerializer(serializers.Serializer):
    """Who did it, as recorded at the time."""

    type = serializers.ChoiceField(choices=ActorType.choices, help_text="user, apiKey or system")
    id = serializers.UUIDField(allow_null=True, help_text="The user's or API key's id; null for the system.")
    name = serializers.CharField(help_text="The name at the time of the event.")


class LeadEventSerializer(ApiModelSerializer):
    """One entry of a lead's timeline."""

    kind = serializers.ChoiceField(choices=LeadEventKind.choices)
    actor = serializers.SerializerMethodField()
    data = serializers.SerializerMethodField(
        help_text="stage_changed: fromStageId, fromStageName, toStageId, toStageName. field_changed: "
        "changes {field: [old, new]}. activity_logged and email events: the object. lead_created: title, "
        "stageId, stageName, value, currency, probabilityPct."
    )

    class Meta:
        model = LeadEvent
        fields = ["id", "kind", "occurred_at", "actor", "summary", "data"]
        read_only_fields = fields

    @extend_schema_field(TimelineActorSerializer)
    def get_actor(self, event: LeadEvent) -> dict:
        return {
            "type": event.actor_type,
            "id": str(event.actor_id) if event.actor_id else None,
            "name": event.actor_name or ("System" if event.actor_type == ActorType.SYSTEM else ""),
        }

    @extend_schema_field({"type": "object", "additionalProperties": True})
    def get_data(self, event: LeadEvent) -> dict:
        return event.data


# --- views --------------------------------------------------------------------------------------

LEAD_ENVELOPE = item_envelope("lead", LeadSerializer)


@extend_schema_view(
    list=extend_schema(
        summary="List leads",
        description="Newest updatedAt first, then id. Each lead embeds its stage {id, name, kind, systemKey}.",
    ),
    create=extend_schema(
        summary="Create a lead",
        description="Stage from stageId or stage (name or system key); default the first open stage. "
        "probabilityPct defaults to the stage's default, currency to the entity's. A lead created in a won or "
        "lost stage gets closedAt. Records lead_created on the timeline.",
    ),
    retrieve=extend_schema(summary="Get a lead"),
    partial_update=extend_schema(
        summary="Update a lead",
        description="Changes only the fields sent. A new stageId/stage moves the lead exactly as PATCH "
        ".../stage does (probabilityPct and lostReason sent alongside apply to the move). Changes of title, "
        "value, ownerUserId and expectedCloseDate are recorded as one field_changed event.",
    ),
    destroy=extend_schema(
        summary="Delete a lead", description="Its activities stay, with leadId null; its timeline is deleted."
    ),
)
class LeadViewSet(
    BulkMixin, ListMixin, CreateMixin, RetrieveMixin, PartialUpdateMixin, DestroyOkMixin, EntityScopedViewSet
):
    queryset = Lead.objects.all()
    serializer_class = LeadSerializer
    filterset_class = LeadFilter
    item_key = "lead"
    list_key = "leads"
    ordering = ("-updated_at", "id")
    total_counter = "lead"
    search_params = ("q",)

    def narrow_queryset(self, queryset):
        return queryset.select_related("stage")

    def perform_create(self, serializer):
        return lead_create(
            entity=self.request.entity, actor=Actor.from_request(self.request), **serializer.validated_data
        )

    def perform_update(self, serializer):
        return lead_update(
            lead=serializer.instance, actor=Actor.from_request(self.request), **serializer.validated_data
        )

    def perform_destroy(self, instance):
        lead_delete(lead=instance)

    @extend_schema(
        summary="Move a lead to another stage",
        description="Body: exactly one of stageId or stage (name or system key), optional probabilityPct and "
        "lostReason. Entering a stage resets probabilityPct to the stage's default unless given; entering won or "
        "lost sets closedAt; returning to an open stage clears closedAt and lostReason; lostReason is accepted "
        "only for a lost stage (else 400). Moving to the current stage changes nothing (no event, probabilityPct "
        "and lostReason ignored). Records stage_changed on the timeline.",
        request=LeadStageMoveSerializer,
        responses={200: LEAD_ENVELOPE},
    )
    @action(detail=True, methods=["patch"], url_path="stage", filter_backends=[])
    def move_stage(self, request, *args, **kwargs):
        lead = self.get_object()
        body = LeadStageMoveSerializer(data=request.data, context=self.get_serializer_context())
        body.is_valid(raise_exception=True)
        data = body.validated_data
        lead = lead_move_stage(
            lead=lead,
            stage=data["target"],
            actor=Actor.from_request(request),
            probability_pct=data.get("probability_pct"),
            lost_reason=data.get("lost_reason"),
        )
        return self.wrap(lead)


LEAD_ID_PATH = OpenApiParameter("leadId", OpenApiTypes.UUID, OpenApiParameter.PATH, description="Lead id")


@extend_schema(parameters=[LEAD_ID_PATH])
@extend_schema_view(
    list=extend_schema(
        summary="A lead's timeline",
        description="Events newest first (occurredAt, then id, descending), paginated like every list. "
        "Unknown lead → 404.",
    ),
)
class LeadTimelineViewSet(ListMixin, EntityScopedViewSet):
    """`/leads/{leadId}/timeline`: the lead's event log."""

    queryset = LeadEvent.objects.all()
    serializer_class = LeadEventSerializer
    filter_backends = []
    parent_resource = ParentResource(Lead, "leadId", field="lead")
    item_key = "event"
    list_key = "timeline"
    ordering = TIMELINE_ORDER  # the order of crm.selectors.timeline, shared with the lead page


class LeadActivitySerializer(ActivitySerializer):
    """The activity body of the nested create: the path names the lead, so a `leadId` in the body
    may only repeat it (never null, which would say "no lead")."""

    lead_id = EntityRelatedField(
        model=Lead, source="lead", required=False, help_text="This lead's id, or left out (never null)."
    )


@extend_schema(parameters=[LEAD_ID_PATH])
@extend_schema_view(
    create=extend_schema(
        summary="Log an activity on a lead",
        description="The activity takes the lead's companyId and contactId unless given (null included). "
        "A leadId in the body must be this lead's (else 400). Records activity_logged on the lead's timeline. "
        "Unknown lead → 404.",
    ),
)
class LeadActivityViewSet(CreateMixin, EntityScopedViewSet):
    """`POST /leads/{leadId}/activities`: an activity logged on the lead."""

    queryset = Activity.objects.all()
    serializer_class = LeadActivitySerializer
    filter_backends = []
    parent_resource = ParentResource(Lead, "leadId", field="lead")
    item_key = "activity"
    list_key = "activities"

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        if data.pop("lead", self.parent) != self.parent:
            raise errors.Invalid("leadId must be this lead's id (or left out).", field="lead_id")
        actor = Actor.from_request(self.request)
        return activity_create(
            entity=self.request.entity,
            actor=actor,
            created_by=actor.user,
            lead=self.parent,
            company=data.pop("company", UNSET),
            contact=data.pop("contact", UNSET),
            **data,
        )
