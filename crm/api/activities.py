"""Activities and tasks: `/api/crm/activities` and `/api/crm/tasks`.

Tasks are activities of type `task`; `/tasks` is a read-only list over the same rows with its
own filters and order (due first, undated last). Writes go through `crm.services.activities`.
"""

from __future__ import annotations

from django.db.models import F
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers

from axiomatic.api.schema import ApiAutoSchema
from axiomatic.api.serializers import (
    ApiDateTimeField,
    ApiModelSerializer,
    EntityMemberField,
    EntityRelatedField,
    StrictUUIDField,
)
from axiomatic.api.viewsets import (
    CreateMixin,
    DestroyOkMixin,
    EntityScopedViewSet,
    ListMixin,
    PartialUpdateMixin,
    RetrieveMixin,
)
from crm.api.bulk import BulkMixin
from crm.choices import ActivityDirection, ActivityStatus, ActivityType
from crm.filters import DUE_HELP, ActivityFilter, TaskFilter
from crm.models import Activity, Company, Contact, Lead
from crm.services.activities import activity_create, activity_delete, activity_update
from crm.services.actors import Actor


class ActivitySerializer(ApiModelSerializer):
    """A call, email, meeting, note or task about a lead, company or contact."""

    type = serializers.ChoiceField(choices=ActivityType.choices, help_text="Required on create.")
    subject = serializers.CharField(max_length=200, help_text="Required, 1–200 characters, trimmed.")
    status = serializers.ChoiceField(
        choices=ActivityStatus.choices,
        required=False,
        help_text="Default open for tasks, completed for other types. Setting completed sets completedAt; "
        "open or cancelled clears it.",
    )
    occurred_at = ApiDateTimeField(required=False, help_text="When it happened; default now.")
    due_at = ApiDateTimeField(required=False, allow_null=True)
    completed_at = ApiDateTimeField(read_only=True, allow_null=True, help_text="Set when the status becomes completed.")
    lead_id = EntityRelatedField(model=Lead, source="lead", allow_null=True, required=False)
    company_id = EntityRelatedField(model=Company, source="company", allow_null=True, required=False)
    contact_id = EntityRelatedField(model=Contact, source="contact", allow_null=True, required=False)
    project_id = StrictUUIDField(
        allow_null=True, required=False, help_text="An opaque UUID the client may use to group tasks."
    )
    duration_minutes = serializers.IntegerField(
        min_value=0, max_value=2_147_483_647, allow_null=True, required=False, help_text="Minutes, 0–2147483647."
    )
    assignee_user_id = EntityMemberField(
        source="assignee", allow_null=True, required=False, help_text="A member of the entity (else 400)."
    )
    created_by_user_id = serializers.UUIDField(
        source="created_by_id", read_only=True, allow_null=True, help_text="The user who created it (read-only)."
    )
    direction = serializers.ChoiceField(
        choices=ActivityDirection.choices,
        read_only=True,
        allow_null=True,
        help_text="Emails only: outbound (sent from a connected mailbox) or inbound (received in one, read by "
        "the inbound sync); null otherwise (read-only).",
    )

    class Meta:
        model = Activity
        fields = [
            "id",
            "type",
            "subject",
            "body",
            "status",
            "occurred_at",
            "due_at",
            "completed_at",
            "duration_minutes",
            "outcome",
            "lead_id",
            "company_id",
            "contact_id",
            "project_id",
            "assignee_user_id",
            "created_by_user_id",
            "direction",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "completed_at", "created_by_user_id", "direction", "created_at", "updated_at"]


@extend_schema_view(
    list=extend_schema(
        summary="List activities",
        description="Newest occurredAt first, then id. Filters by company, contact, lead and type.",
    ),
    create=extend_schema(
        summary="Create an activity",
        description="Status defaults to open for tasks and completed otherwise (completedAt set). An activity "
        "with a leadId is recorded on the lead's timeline (activity_logged). createdByUserId is the caller "
        "(the key's user for API keys).",
    ),
    retrieve=extend_schema(summary="Get an activity"),
    partial_update=extend_schema(
        summary="Update an activity",
        description="Changes only the fields sent. Completing sets completedAt; reopening or cancelling clears it.",
    ),
    destroy=extend_schema(summary="Delete an activity", description="The lead's timeline keeps its history."),
)
class ActivityViewSet(
    BulkMixin, ListMixin, CreateMixin, RetrieveMixin, PartialUpdateMixin, DestroyOkMixin, EntityScopedViewSet
):
    queryset = Activity.objects.all()
    serializer_class = ActivitySerializer
    filterset_class = ActivityFilter
    item_key = "activity"
    list_key = "activities"
    ordering = ("-occurred_at", "id")
    total_counter = "activity"

    def perform_create(self, serializer):
        actor = Actor.from_request(self.request)
        return activity_create(
            entity=self.request.entity, actor=actor, created_by=actor.user, **serializer.validated_data
        )

    def perform_update(self, serializer):
        return activity_update(activity=serializer.instance, **serializer.validated_data)

    def perform_destroy(self, instance):
        activity_delete(activity=instance)


class TaskSchema(ApiAutoSchema):
    """`/tasks` pages the activity serializer under its own key, so its page gets its own component."""

    def get_paginated_name(self, serializer_name: str) -> str:
        return "PaginatedTaskList"


@extend_schema_view(
    list=extend_schema(
        summary="List tasks",
        description="Activities of type task, ordered by dueAt ascending (undated last), then id. " + DUE_HELP,
    ),
)
class TaskViewSet(ListMixin, EntityScopedViewSet):
    queryset = Activity.objects.all()
    serializer_class = ActivitySerializer
    filterset_class = TaskFilter
    schema = TaskSchema()
    item_key = "task"
    list_key = "tasks"
    ordering = (F("due_at").asc(nulls_last=True), "id")
    total_counter = "activity.task"

    def narrow_queryset(self, queryset):
        return queryset.filter(type=ActivityType.TASK)
