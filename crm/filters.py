"""The FilterSets of the CRM's lists, below both the API and the sales pages.

`/api/crm/*` lists and the pages (`crm/pages/`) filter through the same classes, so a filter means
the same thing (and refuses the same values) wherever it is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from datetime import datetime, time, timedelta

import django_filters
from django.core.cache import cache
from django.db.models import Q
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiParameter

from axiomatic import errors
from axiomatic.db import is_postgres
from axiomatic.filters import OwnerFilter, StrictFilterSet, SubstringFilter
from axiomatic.ordering import expected_rows
from axiomatic.totals import COUNT_CAP, total_known_over_cap
from crm.choices import ActivityStatus, ActivityType, CompanyRole, CompanyStatus, StageKind
from crm.models import Activity, Company, Contact, Lead
from crm.selectors.contacts import FullName
from crm.selectors.custom_fields import (
    OBJECT_MODELS,
    definitions_by_key,
    equals_q,
    equals_walk_q,
    has_value_q,
    object_type_of,
    range_q,
)
from crm.services.custom_fields import RANGE_TYPES, custom_field_filter_value
from crm.services.pipeline import stage_resolve

DUE_WEEK_DAYS = 7
DUE_HELP = (
    "overdue: dueAt before now and status open. today: dueAt within today in the entity's time zone "
    "(local midnight to the next local midnight). week: dueAt from today's local midnight through the end "
    f"of the {DUE_WEEK_DAYS - 1}th day after today ({DUE_WEEK_DAYS} local calendar days starting today; not the "
    "ISO week). today and week match any status; combine with status=open for what is still to do."
)


CUSTOM_FIELD_PARAM = re.compile(r"^cf(?:\.(?P<dotted>.+)|\[(?P<bracketed>[^\]]+)\])$")
CUSTOM_FIELD_OPERATORS = ("gte", "lte", "empty")
COMMON_MATCHES = 3 * COUNT_CAP
# A value the statistics put at ten times the capped count or more is over the cap without counting
# (see `CustomFieldFilters._equal`): a random sample of the column that shows it in one row in ten
# or more does not come from a value held by under one in a hundred.
OVER_CAP_BY_STATISTICS = 10 * COUNT_CAP
EXPECTED_MATCHES_SECONDS = 600
CUSTOM_FIELD_FILTER_HELP = (
    "Custom field filters, on every key of GET /custom-fields for this object type: `cf.<key>=<value>` (exact; "
    "multiselect: holds that option; boolean: true/false; user: a UUID, me or unassigned; currency: the amount), "
    "`cf.<key>.gte` / `cf.<key>.lte` (number, date, datetime, currency amount), `cf.<key>.empty=true|false`. "
    "`cf[<key>]`, `cf[<key>.gte]`, ... (deepObject style) mean the same. An unknown key or a malformed value → 400."
)


CUSTOM_FIELD_PARAMETER = OpenApiParameter(
    "cf",
    {"type": "object", "additionalProperties": {"type": "string"}},
    OpenApiParameter.QUERY,
    required=False,
    style="deepObject",
    explode=True,
    description=CUSTOM_FIELD_FILTER_HELP,
    examples=[
        OpenApiExample("Equality", value={"tier": "emea"}),
        OpenApiExample("Range", value={"seats.gte": "10", "seats.lte": "50"}),
        OpenApiExample("Unset", value={"renewal.empty": "true"}),
    ],
)


def _expected_matches(definition, stored) -> float:
    """PostgreSQL's estimate of the entity's records holding `stored` (EXPLAIN, nothing run),
    kept ten minutes in the shared cache: how common a value is changes slowly, and the estimate
    costs a round trip that a filtered page would otherwise pay every time."""
    key = (
        "crm:cf-matches:"
        + hashlib.sha256(
            json.dumps([str(definition.entity_id), definition.storage_key, stored], default=str).encode()
        ).hexdigest()
    )
    try:
        found = cache.get(key)
    except Exception:  # the cache is an optimisation only
        found = None
    if found is not None:
        return found
    model = OBJECT_MODELS[definition.object_type]
    estimate = expected_rows(model.objects.for_entity(definition.entity_id).filter(equals_q(definition, stored)))
    with contextlib.suppress(Exception):  # the cache is an optimisation only
        cache.set(key, estimate, EXPECTED_MATCHES_SECONDS)
    return estimate


class CustomFieldFilters:
    """`cf.<key>`, `cf.<key>.gte`, `cf.<key>.lte`, `cf.<key>.empty` on a list of companies, contacts
    or leads: the parameters are as many as the entity has fields, so they are read from the query
    here rather than declared. Values are parsed by the custom field service's own normalisers into
    the stored form, so equality is one `@>` containment served by the GIN index (CONTRACT §13)."""

    openapi_parameters = (CUSTOM_FIELD_PARAMETER,)

    def _custom_conditions(self) -> tuple[list, dict[str, str]]:
        if hasattr(self, "_cf_parsed"):
            return self._cf_parsed
        conditions, problems = [], {}
        data = self.data or {}
        entity = getattr(self.request, "entity", None)
        definitions = None
        for name in data:
            match = CUSTOM_FIELD_PARAM.match(str(name))
            if match is None:
                continue
            if definitions is None:
                definitions = definitions_by_key(entity=entity, object_type=object_type_of(self._meta.model))
            path = match["dotted"] or match["bracketed"]
            key, _, operator = path.partition(".")
            values = data.getlist(name) if hasattr(data, "getlist") else [data[name]]
            raw = values[-1] if values else ""
            definition = definitions.get(key)
            if definition is None:
                problems[name] = "Unknown custom field."
                continue
            if operator and operator not in CUSTOM_FIELD_OPERATORS:
                problems[name] = "Use cf.<key>, cf.<key>.gte, cf.<key>.lte or cf.<key>.empty."
                continue
            try:
                conditions.append(self._custom_condition(definition, operator, raw))
            except errors.Invalid as invalid:
                problems[name] = invalid.message
        self._cf_parsed = (conditions, problems)
        return self._cf_parsed

    def _custom_condition(self, definition, operator: str, raw: str):
        if operator == "empty":
            if raw not in ("true", "false"):
                raise errors.Invalid("Must be true or false.")
            return ("q", ~has_value_q(definition) if raw == "true" else has_value_q(definition))
        if operator in ("gte", "lte"):
            if definition.type not in RANGE_TYPES:
                raise errors.Invalid(f"{operator} applies to number, date, datetime and currency fields.")
            return ("range", definition, operator, custom_field_filter_value(definition, raw, bound=True))
        if definition.type == "user" and raw in ("me", "unassigned"):
            if raw == "unassigned":
                return ("q", ~has_value_q(definition))
            raw = str(self.request.user.pk)
        return ("eq", definition, custom_field_filter_value(definition, raw, bound=False))

    def _equal(self, queryset, definition, stored, *, alone: bool):
        """Equality through the GIN index; but when PostgreSQL expects more matches than the
        capped count reads (`COMMON_MATCHES`), the index would collect every one of them before the
        first page or the count could start, so the condition is written for reading the list in
        its order instead (one planning-only EXPLAIN decides, about a millisecond, cached).

        The capped count of such a value reads the table until 10,001 matches (a built-in filter
        such as `role` counts them from its btree alone; a jsonb value has none to count from):
        50,000 rows for one record in five. So when the value is the list's only filter and the
        statistics expect `OVER_CAP_BY_STATISTICS` matches or more, the list answers
        `total: 10000, totalExact: false` without counting (`total_known_over_cap`)."""
        indexed = queryset.filter(equals_q(definition, stored))
        if not is_postgres(queryset.db):
            return indexed
        expected = _expected_matches(definition, stored)
        if expected <= COMMON_MATCHES:
            return indexed
        if alone and expected >= OVER_CAP_BY_STATISTICS:
            total_known_over_cap(self.request)
        return queryset.filter(equals_walk_q(definition, stored))

    def _only_custom_filters(self) -> bool:
        """No declared filter (role, q, owner, …) is in use: the custom fields filter alone."""
        cleaned = getattr(self.form, "cleaned_data", {})
        return not any(value not in (None, "", [], ()) for value in cleaned.values())

    def is_valid(self) -> bool:
        valid = super().is_valid()
        _, problems = self._custom_conditions()
        for name, message in problems.items():
            self.form.errors[name] = self.form.error_class([message])
        return valid and not problems

    def filter_queryset(self, queryset):
        queryset = super().filter_queryset(queryset)
        conditions, problems = self._custom_conditions()
        if problems:
            return queryset.none()
        for condition in conditions:
            if condition[0] == "q":
                queryset = queryset.filter(condition[1])
            elif condition[0] == "eq":
                alone = len(conditions) == 1 and self._only_custom_filters()
                queryset = self._equal(queryset, condition[1], condition[2], alone=alone)
            else:
                _, definition, operator, bound = condition
                queryset = range_q(queryset, definition, lookup=operator, bound=bound)
        return queryset


class CompanyFilter(CustomFieldFilters, StrictFilterSet):
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


class ContactFilter(CustomFieldFilters, StrictFilterSet):
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


class LeadFilter(CustomFieldFilters, StrictFilterSet):
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
