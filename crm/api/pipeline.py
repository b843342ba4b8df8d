"""Pipeline stages: serializers and views of `/api/crm/pipeline-stages`.

The stage list is small and shown whole (no paging), with each stage's `leadCount` from one
aggregate query. Every write with a rule (create at the end, reorder, kind changes, delete with
lead reassignment) is a call into `crm.services.pipeline`.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.response import Response

from axiomatic.api.schema import ApiAutoSchema, ErrorSerializer, item_envelope
from axiomatic.api.serializers import ApiModelSerializer, ApiSerializer, EntityRelatedField, StrictUUIDField
from axiomatic.api.viewsets import CreateMixin, EntityScopedViewSet, PartialUpdateMixin, RetrieveMixin
from axiomatic.roles import ADMIN
from crm.choices import ColorKey, StageKind
from crm.models import PipelineStage
from crm.selectors.pipeline import stages_with_lead_counts
from crm.services.actors import Actor
from crm.services.pipeline import (
    stage_create,
    stage_delete,
    stage_update,
    stages_reorder,
)

MAX_STAGES_IN_REORDER = 500

# StageKind's values, labelled for the documentation (and so this choice set gets its own enum name).
STAGE_KIND_CHOICES = [
    (StageKind.OPEN.value, "Open: the lead is still being worked"),
    (StageKind.WON.value, "Won: the deal closed"),
    (StageKind.LOST.value, "Lost: the deal fell through"),
]


class PipelineStageSerializer(ApiModelSerializer):
    """A column of the entity's sales pipeline."""

    name = serializers.CharField(
        max_length=60, help_text="1–60 characters, trimmed; unique in the entity case-insensitively (else 409)."
    )
    kind = serializers.ChoiceField(
        choices=STAGE_KIND_CHOICES,
        required=False,
        help_text="What reaching the stage means. Default open. Fixed for stages with a systemKey (400).",
    )
    default_probability_pct = serializers.IntegerField(
        min_value=0,
        max_value=100,
        required=False,
        help_text="Probability a lead entering the stage gets. Default 100 for won stages, 0 otherwise.",
    )
    color_key = serializers.ChoiceField(choices=ColorKey.choices, required=False, help_text="Default slate.")
    sort_order = serializers.IntegerField(read_only=True, help_text="0-based position; change it with reorder.")
    system_key = serializers.CharField(
        read_only=True,
        allow_null=True,
        help_text="Set on the seven default stages (new, contacted, qualified, proposal, negotiation, won, "
        "lost); null for stages users add.",
    )
    lead_count = serializers.IntegerField(read_only=True, help_text="Leads currently in the stage.")

    class Meta:
        model = PipelineStage
        fields = [
            "id",
            "name",
            "kind",
            "sort_order",
            "default_probability_pct",
            "color_key",
            "system_key",
            "lead_count",
        ]
        read_only_fields = ["id", "sort_order", "system_key", "lead_count"]


class StageReorderSerializer(ApiSerializer):
    """The new order of the entity's stages."""

    stage_ids = serializers.ListField(
        child=StrictUUIDField(),
        max_length=MAX_STAGES_IN_REORDER,
        help_text="Every stage id of the entity exactly once, in the new order. Missing, duplicate, unknown "
        "or another entity's ids → 400.",
    )


class StageDeleteSerializer(ApiSerializer):
    """Optional body of a stage deletion."""

    move_leads_to_stage_id = EntityRelatedField(
        model=PipelineStage,
        required=False,
        allow_null=True,
        help_text="Where the stage's leads go. Required when the stage has leads (else 409); must be another "
        "stage of the entity (else 400).",
    )


StageListSerializer = inline_serializer(name="PipelineStageList", fields={"stages": PipelineStageSerializer(many=True)})
StageDeleteResultSerializer = inline_serializer(
    name="PipelineStageDeleteResult",
    fields={
        "ok": serializers.BooleanField(),
        "movedLeadCount": serializers.IntegerField(help_text="How many leads were moved to the target stage."),
    },
)


class PipelineStageSchema(ApiAutoSchema):
    """Two departures from drf-spectacular's defaults: the stage list is one object (`{"stages": [...]}`),
    not an array, and stage deletion has a JSON body (documented for POST/PUT/PATCH only by default)."""

    def _is_list_view(self, serializer=None) -> bool:
        if getattr(self.view, "action", None) == "list":
            return False
        return super()._is_list_view(serializer)

    def _get_request_body(self, direction="request"):
        if self.method != "DELETE":
            return super()._get_request_body(direction)
        self.method = "POST"
        try:
            body = super()._get_request_body(direction)
        finally:
            self.method = "DELETE"
        if body:
            body["required"] = False
        return body


@extend_schema_view(
    list=extend_schema(
        summary="List pipeline stages",
        description="All stages of the entity in sortOrder (no paging), each with its leadCount.",
        responses={200: StageListSerializer},
    ),
    create=extend_schema(
        summary="Create a pipeline stage",
        description="The new stage goes last. A name already used (case-insensitively) → 409 with existingId.",
        responses={201: item_envelope("stage", PipelineStageSerializer), 409: ErrorSerializer},
    ),
    retrieve=extend_schema(summary="Get a pipeline stage"),
    partial_update=extend_schema(
        summary="Update a pipeline stage",
        description="name, kind, defaultProbabilityPct, colorKey; sortOrder and systemKey are read-only (ignored). "
        "The kind of a stage with a systemKey cannot change (400); a kind change that would leave no stage of "
        "the old kind → 409. Leads in a stage whose kind changes follow it: becoming won or lost closes them "
        "(closedAt set), becoming open reopens them (closedAt and lostReason cleared). "
        "A name already used → 409 with existingId.",
        responses={200: item_envelope("stage", PipelineStageSerializer), 409: ErrorSerializer},
    ),
    destroy=extend_schema(
        summary="Delete a pipeline stage",
        description="Optional JSON body `{moveLeadsToStageId}`. A stage that still has leads needs a target "
        "(else 409); the target must be another existing stage (else 400); the entity keeps at least one stage "
        "of each kind (else 409). Moved leads change as on a stage move (probability reset to the target's "
        "default, closedAt/lostReason following its kind) and each gets a stage_changed timeline event. The "
        "remaining stages close up their sortOrder. All or nothing, in one transaction.",
        request=StageDeleteSerializer,
        responses={200: StageDeleteResultSerializer, 409: ErrorSerializer},
    ),
)
class PipelineStageViewSet(CreateMixin, RetrieveMixin, PartialUpdateMixin, EntityScopedViewSet):
    # Configuring the pipeline is the admins' job; members read it and move leads through it.
    action_roles = {action: ADMIN for action in ("create", "partial_update", "destroy", "reorder")}
    queryset = PipelineStage.objects.all()
    serializer_class = PipelineStageSerializer
    pagination_class = None
    schema = PipelineStageSchema()
    operation_noun = "PipelineStage"  # listPipelineStages, reorderPipelineStages, ... (axiomatic.api.openapi)
    item_key = "stage"
    list_key = "stages"
    ordering = ("sort_order", "id")

    def narrow_queryset(self, queryset):
        return stages_with_lead_counts(entity=self.request.entity)

    def _reloaded(self, stage: PipelineStage) -> PipelineStage:
        return self.get_queryset().get(pk=stage.pk)

    def _stage_list(self) -> Response:
        serializer = self.get_serializer(self.get_queryset(), many=True)
        return Response({self.list_key: serializer.data})

    def list(self, request, *args, **kwargs):
        return self._stage_list()

    def perform_create(self, serializer):
        return self._reloaded(stage_create(entity=self.request.entity, **serializer.validated_data))

    def perform_update(self, serializer):
        return self._reloaded(stage_update(stage=serializer.instance, **serializer.validated_data))

    def destroy(self, request, *args, **kwargs):
        stage = self.get_object()
        body = StageDeleteSerializer(data=request.data, context=self.get_serializer_context())
        body.is_valid(raise_exception=True)
        moved = stage_delete(
            stage=stage,
            move_leads_to=body.validated_data.get("move_leads_to_stage_id"),
            actor=Actor.from_request(request),
        )
        return Response({"ok": True, "movedLeadCount": moved})

    @extend_schema(
        summary="Reorder pipeline stages",
        description="The body lists every stage of the entity exactly once, in the new order (missing, "
        "duplicate, unknown or another entity's ids → 400). Orders are rewritten atomically with the entity's "
        "stages locked, so concurrent reorders never leave duplicates or gaps. Answers all stages in the new order.",
        request=StageReorderSerializer,
        responses={200: StageListSerializer},
    )
    @action(detail=False, methods=["post"], url_path="reorder")
    def reorder(self, request, *args, **kwargs):
        body = StageReorderSerializer(data=request.data, context=self.get_serializer_context())
        body.is_valid(raise_exception=True)
        stages_reorder(entity=request.entity, stage_ids=body.validated_data["stage_ids"])
        return self._stage_list()
