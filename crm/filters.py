"""The FilterSets of the CRM's lists, below both the API and the sales pages.

`/api/crm/*` lists and the pages (`crm/pages/`) filter through the same classes, so a filter means
the same thing (and refuses the same values) wherever it is used.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

import django_filters
from django.db.models import Q
from django.utils import timezone

from axiomatic.filters import OwnerFilter, StrictFilterSet, SubstringFilter
from crm.choices import ActivityStatus, ActivityType, CompanyRole, CompanyStatus, StageKind
from crm.models import Activity, Company, Contact, Lead
from crm.selectors.contacts import FullName
from crm.services.pipeline import stage_resolve

DUE_WEEK_DAYS = 7
DUE_HELP = (
    "overdue: dueAt before now and status open. today: dueAt within today in the entity's time zone "
    "(local midnight to the next local midnight). week: dueAt from today's local midnight through the end "
    f"of the {DUE_WEEK_DAYS - 1}th day after today ({DUE_WEEK_DAYS} local calendar days starting today; not the "
    "ISO week). today and week match any status; combine with status=open for what is still to do."
)


class CompanyFilter(StrictFilterSet):
    role = django_filters.ChoiceFilter(choices=CompanyRole.choices, help_text="Commercial relationship type")
    status = django_filters.ChoiceFilter(
        choices=CompanyStatus.choices,
        help_text="Lifecycle: active, or inactive (archived). Without it, archived companies are included.",
    )
    ownerUserId = OwnerFilter(field_name="owner", help_text="UUID, me, or unassigned")
    q = SubstringFilter(field_name="name", help_text="Case-insensitive substring of the name")

    class Meta:
        model = Company
        fields = ["role", "status", "ownerUserId", "q"]


class ContactFilter(StrictFilterSet):
    companyId = django_filters.UUIDFilter(
        field_name="memberships__company",
        help_text="Contacts with a membership (primary or not) at this company. An unknown id matches nothing.",
    )
    q = django_filters.CharFilter(
        method="filter_q",
        help_text="Case-insensitive substring of the full name (first and last name) or email; % and _ are literal.",
    )
    ownerUserId = OwnerFilter(field_name="owner", help_text="UUID, me, or unassigned")
    email = django_filters.CharFilter(field_name="email", lookup_expr="iexact", help_text="Exact, case-insensitive")

    class Meta:
        model = Contact
        fields = ["companyId", "q", "ownerUserId", "email"]

    def filter_q(self, queryset, name, value):
        if not value:
            return queryset
        # `icontains` escapes % and _, so they match literally. The full-name expression is the one
        # the trigram index `crm_contact_name_trgm` covers (see crm migration 0007).
        return queryset.annotate(search_name=FullName("first_name", "last_name")).filter(
            Q(search_name__icontains=value) | Q(email__icontains=value)
        )


class LeadFilter(StrictFilterSet):
    companyId = django_filters.UUIDFilter(field_name="company_id", help_text="Company id")
    contactId = django_filters.UUIDFilter(field_name="contact_id", help_text="Contact id")
    stageId = django_filters.UUIDFilter(field_name="stage_id", help_text="Stage id")
    stage = django_filters.CharFilter(
        method="filter_stage", help_text="A stage name (case-insensitive) or system key such as won."
    )
    status = django_filters.ChoiceFilter(
        field_name="stage__kind", choices=StageKind.choices, help_text="The stage's kind"
    )
    ownerUserId = OwnerFilter(field_name="owner", help_text="UUID, me, or unassigned")
    q = SubstringFilter(field_name="title", help_text="Case-insensitive substring of the title")

    class Meta:
        model = Lead
        fields = ["companyId", "contactId", "stageId", "stage", "status", "ownerUserId", "q"]

    def filter_stage(self, queryset, name, value):
        stage = stage_resolve(entity=self.request.entity, reference=value)
        return queryset.filter(stage=stage) if stage is not None else queryset.none()


class ActivityFilter(StrictFilterSet):
    companyId = django_filters.UUIDFilter(field_name="company_id", help_text="Company id")
    contactId = django_filters.UUIDFilter(field_name="contact_id", help_text="Contact id")
    leadId = django_filters.UUIDFilter(field_name="lead_id", help_text="Lead id")
    type = django_filters.ChoiceFilter(choices=ActivityType.choices, help_text="Activity type")

    class Meta:
        model = Activity
        fields = ["companyId", "contactId", "leadId", "type"]


class TaskFilter(StrictFilterSet):
    projectId = django_filters.UUIDFilter(field_name="project_id", help_text="Project id (opaque UUID)")
    status = django_filters.ChoiceFilter(choices=ActivityStatus.choices, help_text="Task status")
    assigneeUserId = OwnerFilter(field_name="assignee", help_text="UUID, me, or unassigned")
    due = django_filters.ChoiceFilter(
        choices=[("overdue", "overdue"), ("today", "today"), ("week", "week")],
        method="filter_due",
        help_text=DUE_HELP,
    )

    class Meta:
        model = Activity
        fields = ["projectId", "status", "assigneeUserId", "due"]

    def filter_due(self, queryset, name, value):
        now = timezone.now()
        if value == "overdue":
            return queryset.filter(due_at__lt=now, status=ActivityStatus.OPEN)
        tz = self.request.entity.tzinfo
        today = now.astimezone(tz).date()
        days = 1 if value == "today" else DUE_WEEK_DAYS
        start = datetime.combine(today, time.min, tzinfo=tz)
        end = datetime.combine(today + timedelta(days=days), time.min, tzinfo=tz)
        return queryset.filter(due_at__gte=start, due_at__lt=end)
