"""`GET /api/crm/dashboard`. Scope read:crm. Figures come from crm.selectors.dashboard."""

from __future__ import annotations

from django import forms
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.response import Response

from axiomatic.api.serializers import ApiSerializer
from axiomatic.api.viewsets import EntityScopedViewSet
from axiomatic.filters import OWNER_SCHEMA, OwnerChoiceField
from crm.choices import StageKind
from crm.models import Lead
from crm.selectors.dashboard import dashboard_summary

_TZ = "in the entity's time zone"
_OWNER = " Narrowed by `ownerUserId`."


class MoneyAmountSerializer(ApiSerializer):
    """An amount of money in one currency."""

    currency = serializers.CharField(help_text="ISO 4217 code.")
    amount = serializers.DecimalField(
        max_digits=None, decimal_places=2, help_text='Decimal string with two fraction digits, e.g. "12500.00".'
    )

    class Meta:
        ref_name = "MoneyAmount"


def _money(help_text: str) -> MoneyAmountSerializer:
    return MoneyAmountSerializer(
        many=True,
        help_text=help_text + " One entry per currency that has at least one lead with a value in the figure, "
        "sorted by currency code; an empty list when there is none. Leads without a value count in "
        "`leadCount` but in no money figure.",
    )


class CompanyRoleCountsSerializer(ApiSerializer):
    """Company counts per role; all four roles are always present."""

    prospect = serializers.IntegerField()
    customer = serializers.IntegerField()
    vendor = serializers.IntegerField()
    both = serializers.IntegerField()

    class Meta:
        ref_name = "DashboardCompanyRoles"


class DashboardCompaniesSerializer(ApiSerializer):
    """Company counts."""

    total = serializers.IntegerField(help_text="All companies, archived included." + _OWNER)
    active = serializers.IntegerField(help_text="Companies with status active (not archived)." + _OWNER)
    by_role = CompanyRoleCountsSerializer(
        help_text="All companies (archived included) per role; every role is present, zero when none." + _OWNER
    )

    class Meta:
        ref_name = "DashboardCompanies"


class DashboardContactsSerializer(ApiSerializer):
    """Contact counts."""

    total = serializers.IntegerField(help_text="All contacts." + _OWNER)

    class Meta:
        ref_name = "DashboardContacts"


class DashboardLeadsSerializer(ApiSerializer):
    """Lead counts by the kind of stage they are in now, and this month's movements."""

    open = serializers.IntegerField(help_text="Leads now in an open-kind stage." + _OWNER)
    won = serializers.IntegerField(help_text="Leads now in a won-kind stage (any time)." + _OWNER)
    lost = serializers.IntegerField(help_text="Leads now in a lost-kind stage (any time)." + _OWNER)
    created_this_month = serializers.IntegerField(
        help_text=f"Leads (any stage) whose createdAt is in the current calendar month {_TZ}." + _OWNER
    )
    won_this_month = serializers.IntegerField(
        help_text=f"Leads now in a won stage whose closedAt is in the current calendar month {_TZ}." + _OWNER
    )
    lost_this_month = serializers.IntegerField(
        help_text=f"Leads now in a lost stage whose closedAt is in the current calendar month {_TZ}." + _OWNER
    )

    class Meta:
        ref_name = "DashboardLeads"


class DashboardStageSerializer(ApiSerializer):
    """One pipeline stage with the leads now in it."""

    stage_id = serializers.UUIDField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=StageKind.choices)
    lead_count = serializers.IntegerField(help_text="Leads now in the stage." + _OWNER)
    value = _money("Sum of the stage's leads' value.")
    weighted_value = _money(
        "Sum of the stage's leads' weightedValue (value × probabilityPct / 100, each rounded to cents)."
    )

    class Meta:
        ref_name = "DashboardStage"


class DashboardTotalsSerializer(ApiSerializer):
    """Money totals, per currency."""

    open_value = _money("Sum of value over leads in open-kind stages." + _OWNER)
    weighted_open_value = _money("Sum of weightedValue over leads in open-kind stages." + _OWNER)
    won_value_this_month = _money(
        f"Sum of value over leads now in a won stage whose closedAt is in the current calendar month {_TZ}." + _OWNER
    )

    class Meta:
        ref_name = "DashboardTotals"


class DashboardTasksSerializer(ApiSerializer):
    """Open tasks (activities of type task)."""

    open = serializers.IntegerField(help_text="Activities of type task with status open. Narrowed by assignee.")
    overdue = serializers.IntegerField(help_text="Open tasks whose dueAt is before now. Narrowed by assignee.")
    due_today = serializers.IntegerField(
        help_text=f"Open tasks whose dueAt falls within today {_TZ} (local midnight to midnight), including "
        "those already past due earlier today (so they also count in `overdue`). Narrowed by assignee."
    )

    class Meta:
        ref_name = "DashboardTasks"


class DashboardActivitiesSerializer(ApiSerializer):
    """Activity counts over rolling windows ending now."""

    last_7_days = serializers.IntegerField(
        help_text="Activities of every type and status whose occurredAt is within the last 7 × 24 hours up to "
        "now (future-dated ones excluded). Not narrowed by `ownerUserId`."
    )
    last_30_days = serializers.IntegerField(
        help_text="As last7Days, over the last 30 × 24 hours. Not narrowed by `ownerUserId`."
    )

    class Meta:
        ref_name = "DashboardActivities"


@extend_schema_serializer(many=False)  # answered by the viewset's `list` action, but one object
class DashboardSerializer(ApiSerializer):
    """Every dashboard figure of the entity."""

    companies = DashboardCompaniesSerializer()
    contacts = DashboardContactsSerializer()
    leads = DashboardLeadsSerializer()
    pipeline = DashboardStageSerializer(many=True, help_text="Every stage of the entity, in sortOrder.")
    totals = DashboardTotalsSerializer()
    tasks = DashboardTasksSerializer()
    activities = DashboardActivitiesSerializer()
    win_rate_90_days = serializers.FloatField(
        allow_null=True,
        min_value=0,
        max_value=1,
        help_text="won / (won + lost) among leads now in a won or lost stage whose closedAt is within the last "
        "90 × 24 hours up to now, rounded to 4 decimal places; null when there is none." + _OWNER,
    )

    class Meta:
        ref_name = "Dashboard"


class DashboardQuerySerializer(serializers.Serializer):
    """The dashboard's query string (unknown parameters are ignored, as on list routes)."""

    ownerUserId = serializers.CharField(required=False, allow_blank=True)  # the query parameter's name

    def validate_ownerUserId(self, value: str):
        try:
            return OwnerChoiceField(required=False).clean(value)
        except forms.ValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None


OWNER_PARAMETER = OpenApiParameter(
    "ownerUserId",
    OWNER_SCHEMA,
    OpenApiParameter.QUERY,
    required=False,
    description="A user UUID, `me` (the key's user or the session user) or `unassigned` (no owner). Narrows "
    "companies, contacts, leads (so `leads`, `pipeline`, `totals` and `winRate90Days`) by their owner and "
    "`tasks` by their assignee; `activities` always cover the whole entity. A UUID of no member matches "
    "nothing (zeros); a malformed value → 400.",
)


class DashboardViewSet(EntityScopedViewSet):
    queryset = Lead.objects.all()
    serializer_class = DashboardSerializer
    pagination_class = None
    filter_backends: list = []

    @extend_schema(
        operation_id="getDashboard",
        summary="Dashboard figures",
        description="Counts, pipeline and money figures of the entity in one object. Money figures are lists of "
        '`{"currency", "amount"}` (never summed across currencies). "This month" and "today" are calendar '
        'periods in the entity\'s time zone (default UTC); "last N days" are rolling windows of N × 24 hours '
        "ending now.",
        parameters=[OWNER_PARAMETER],
        responses={200: DashboardSerializer},
    )
    def list(self, request, *args, **kwargs):
        query = DashboardQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        owner = query.validated_data.get("ownerUserId")
        if owner == "me":
            owner = request.user.pk
        summary = dashboard_summary(entity=request.entity, owner=owner)
        return Response(DashboardSerializer(summary).data)
