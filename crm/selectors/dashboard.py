"""The dashboard's figures, computed by the database in a fixed number of queries.

Every figure is an aggregate (`COUNT(*) FILTER (WHERE ...)`, `SUM`, `GROUP BY stage, currency`),
so the cost does not grow with the number of rows fetched into Python and the query count is
the same for 3 leads or 3 million: one query each for companies, contacts, stages, leads and
activities. Python only folds the per-(stage, currency) groups, whose number is bounded by
stages × currencies.

"This month" and "today" are calendar periods in the entity's time zone; `now` is a parameter so
tests (and reports "as of" a moment) can pin it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, DecimalField, ExpressionWrapper, F, Q, Sum, Value
from django.db.models.functions import Round
from django.utils import timezone

from axiomatic.counters import counter_value, counters_supported
from axiomatic.models import Entity, EntityCounter
from crm.choices import ActivityStatus, ActivityType, CompanyRole, CompanyStatus, StageKind
from crm.models import Activity, Company, Contact, Lead, PipelineFigure, PipelineStage
from crm.selectors.owners import UNASSIGNED, OwnerSelector, owner_q

WIN_RATE_WINDOW = dt.timedelta(days=90)
# Counters of open tasks per UTC day due, `activity.task.open.due:2026-12-01` (crm migration 0013).
OPEN_TASKS_DUE_PREFIX = "activity.task.open.due:"
ZERO = Decimal("0.00")


@dataclass(frozen=True)
class DashboardPeriods:
    """The instants that bound the dashboard's periods, all in UTC."""

    now: dt.datetime
    month_start: dt.datetime
    next_month_start: dt.datetime
    today_start: dt.datetime
    tomorrow_start: dt.datetime

    @classmethod
    def at(cls, *, now: dt.datetime, tz: dt.tzinfo) -> DashboardPeriods:
        """Calendar month and day containing `now` in `tz` (wall-clock midnights, DST-aware)."""
        local = now.astimezone(tz)
        midnight = {"hour": 0, "minute": 0, "second": 0, "microsecond": 0}
        today = local.replace(**midnight)
        tomorrow = (today + dt.timedelta(days=1)).replace(**midnight)
        month = today.replace(day=1)
        next_month = (month + dt.timedelta(days=32)).replace(day=1, **midnight)
        utc = dt.UTC
        return cls(
            now=now.astimezone(utc),
            month_start=month.astimezone(utc),
            next_month_start=next_month.astimezone(utc),
            today_start=today.astimezone(utc),
            tomorrow_start=tomorrow.astimezone(utc),
        )


def _money(amounts: dict[str, Decimal]) -> list[dict]:
    """`{"EUR": 1, "USD": 2}` → `[{"currency": "EUR", "amount": Decimal}, ...]` sorted by currency."""
    return [{"currency": currency, "amount": amounts[currency]} for currency in sorted(amounts)]


def _add(bucket: dict[str, Decimal], currency: str, amount: Decimal | None) -> None:
    if amount is not None:
        bucket[currency] = bucket.get(currency, ZERO) + amount


def _company_figures(*, entity: Entity, owner: OwnerSelector) -> dict:
    if owner is None and counters_supported():
        names = [
            "company",
            f"company.status.{CompanyStatus.ACTIVE}",
            *(f"company.role.{r}" for r in CompanyRole.values),
        ]
        counts = dict(EntityCounter.objects.filter(entity_id=entity.pk, name__in=names).values_list("name", "value"))
        return {
            "total": counts.get("company", 0),
            "active": counts.get(f"company.status.{CompanyStatus.ACTIVE}", 0),
            "by_role": {role: counts.get(f"company.role.{role}", 0) for role in CompanyRole.values},
        }
    role_counts = {role: Count("id", filter=Q(role=role)) for role in CompanyRole.values}
    row = (
        Company.objects.for_entity(entity)
        .filter(owner_q(owner, "owner"))
        .aggregate(
            total=Count("id"),
            active=Count("id", filter=Q(status=CompanyStatus.ACTIVE)),
            **{f"role_{role}": count for role, count in role_counts.items()},
        )
    )
    return {
        "total": row["total"],
        "active": row["active"],
        "by_role": {role: row[f"role_{role}"] for role in CompanyRole.values},
    }


def _stage_groups(*, entity: Entity, owner: OwnerSelector) -> list[dict]:
    """Lead count, value and weighted value per (stage, currency): from the maintained figures on
    PostgreSQL (a few rows, whatever the number of leads), from the leads themselves on SQLite.
    Sums are None for a currency whose leads have no value (so it is left out of money lists)."""
    if counters_supported():
        figures = PipelineFigure.objects.filter(entity_id=entity.pk)
        if owner == UNASSIGNED:
            figures = figures.filter(owner_id__isnull=True)
        elif owner is not None:
            figures = figures.filter(owner_id=owner)
        rows = (
            figures.order_by()
            .values("stage_id", "stage__kind", "currency")
            .annotate(
                lead_count=Sum("lead_count"),
                valued=Sum("valued_count"),
                value_sum=Sum("value_sum"),
                weighted_sum=Sum("weighted_sum"),
            )
        )
        return [
            {
                **row,
                "value_sum": row["value_sum"] if row["valued"] else None,
                "weighted_sum": row["weighted_sum"] if row["valued"] else None,
            }
            for row in rows
        ]
    # Each lead's weighted value is rounded to cents (as the lead's own `weightedValue` is) before
    # summing, so the dashboard equals the sum of what the leads show.
    weighted = Round(
        ExpressionWrapper(
            F("value") * F("probability_pct") / Value(Decimal(100)),
            output_field=DecimalField(max_digits=20, decimal_places=6),
        ),
        2,
        output_field=DecimalField(max_digits=20, decimal_places=2),
    )
    return list(
        Lead.objects.for_entity(entity)
        .filter(owner_q(owner, "owner"))
        .order_by()
        .values("stage_id", "stage__kind", "currency")
        .annotate(lead_count=Count("id"), value_sum=Sum("value"), weighted_sum=Sum(weighted))
    )


def _period_groups(*, entity: Entity, owner: OwnerSelector, periods: DashboardPeriods, stage_kinds: dict) -> list[dict]:
    """The month's and 90 days' figures per (kind, currency), from the leads closed in those
    periods only: a range on the closed index, which carries stage, currency and value, so no
    lead row is visited. Grouped by stage id (not joined to the stages), whose kind `stage_kinds`
    gives. `created_this_month` (a range on the created index) rides on the first row."""
    this_month = Q(closed_at__gte=periods.month_start, closed_at__lt=periods.next_month_start)
    last_90 = Q(closed_at__gte=periods.now - WIN_RATE_WINDOW, closed_at__lte=periods.now)
    leads = Lead.objects.for_entity(entity).filter(owner_q(owner, "owner"))
    created = leads.filter(created_at__gte=periods.month_start, created_at__lt=periods.next_month_start).count()
    rows = list(
        leads.filter(closed_at__gte=min(periods.month_start, periods.now - WIN_RATE_WINDOW))
        .order_by()
        .values("stage_id", "currency")
        .annotate(
            closed_this_month=Count("closed_at", filter=this_month),
            closed_value_this_month=Sum("value", filter=this_month),
            closed_90_days=Count("closed_at", filter=last_90),
        )
    )
    unknown = {row["stage_id"] for row in rows} - stage_kinds.keys()
    if unknown:  # a stage created since the stages were read (a concurrent write)
        stage_kinds = {**stage_kinds, **dict(PipelineStage.objects.filter(pk__in=unknown).values_list("id", "kind"))}
    for row in rows:
        row["stage__kind"] = stage_kinds.get(row["stage_id"], StageKind.OPEN)  # deleted meanwhile: not closed
        row["created_this_month"] = 0
    return [{"stage__kind": StageKind.OPEN, "currency": "", "created_this_month": created}, *rows]


def _lead_figures(*, entity: Entity, owner: OwnerSelector, periods: DashboardPeriods) -> dict:
    stages = list(PipelineStage.objects.for_entity(entity).order_by("sort_order", "id").values("id", "name", "kind"))

    groups = _stage_groups(entity=entity, owner=owner)
    stage_kinds = {stage["id"]: stage["kind"] for stage in stages}
    windows = _period_groups(entity=entity, owner=owner, periods=periods, stage_kinds=stage_kinds)

    per_stage = {stage["id"]: {"lead_count": 0, "value": {}, "weighted": {}} for stage in stages}
    leads = dict.fromkeys(("open", "won", "lost", "created_this_month", "won_this_month", "lost_this_month"), 0)
    open_value: dict[str, Decimal] = {}
    weighted_open_value: dict[str, Decimal] = {}
    won_value_this_month: dict[str, Decimal] = {}
    closed_90 = {StageKind.WON: 0, StageKind.LOST: 0}

    for group in groups:  # one row per (stage, currency): bounded by stages × currencies
        kind = group["stage__kind"]
        currency = group["currency"]
        # A stage created after the stage query (a concurrent write) is counted in the totals only.
        if (stage := per_stage.get(group["stage_id"])) is not None:
            stage["lead_count"] += group["lead_count"]
            _add(stage["value"], currency, group["value_sum"])
            _add(stage["weighted"], currency, group["weighted_sum"])
        leads[kind] += group["lead_count"]
        if kind == StageKind.OPEN:
            _add(open_value, currency, group["value_sum"])
            _add(weighted_open_value, currency, group["weighted_sum"])

    for window in windows:  # one row per (kind, currency) of the leads created or closed lately
        kind = window["stage__kind"]
        leads["created_this_month"] += window["created_this_month"]
        if kind != StageKind.OPEN:
            leads[f"{kind}_this_month"] += window["closed_this_month"]
            closed_90[kind] += window["closed_90_days"]
            if kind == StageKind.WON:
                _add(won_value_this_month, window["currency"], window["closed_value_this_month"])

    closed = closed_90[StageKind.WON] + closed_90[StageKind.LOST]
    return {
        "leads": leads,
        "pipeline": [
            {
                "stage_id": stage["id"],
                "name": stage["name"],
                "kind": stage["kind"],
                "lead_count": per_stage[stage["id"]]["lead_count"],
                "value": _money(per_stage[stage["id"]]["value"]),
                "weighted_value": _money(per_stage[stage["id"]]["weighted"]),
            }
            for stage in stages
        ],
        "totals": {
            "open_value": _money(open_value),
            "weighted_open_value": _money(weighted_open_value),
            "won_value_this_month": _money(won_value_this_month),
        },
        "win_rate_90_days": round(closed_90[StageKind.WON] / closed, 4) if closed else None,
    }


def _overdue_before_today(entity: Entity, now: dt.datetime) -> int:
    """Open tasks due before today (UTC) from the per-day counters (crm migration 0013): one row
    per day that has open tasks, however many tasks are overdue."""
    today = now.astimezone(dt.UTC).date().isoformat()
    total = EntityCounter.objects.filter(
        entity_id=entity.pk, name__gte=OPEN_TASKS_DUE_PREFIX, name__lt=f"{OPEN_TASKS_DUE_PREFIX}{today}"
    ).aggregate(total=Sum("value"))["total"]
    return int(total or 0)


def _activity_figures(*, entity: Entity, owner: OwnerSelector, periods: DashboardPeriods) -> dict:
    """Tasks and recent activities without a scan of the history: open and overdue tasks from the
    maintained counters when nobody is filtered (overdue = the day counters before today plus
    today's tasks due before now), the due ones by `due_at`, the recent ones by `occurred_at`."""
    now = periods.now
    activities = Activity.objects.for_entity(entity)
    open_tasks = activities.filter(type=ActivityType.TASK, status=ActivityStatus.OPEN).filter(
        owner_q(owner, "assignee")
    )
    # Counted by the column the range is on (never null inside the range), not by id: the index
    # holds it, so each count is an index-only scan instead of a visit to every row it counts.
    if owner is None and counters_supported():
        tasks_open = counter_value(entity.pk, "activity.task.open")
        utc_midnight = now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        start = min(utc_midnight, periods.today_start)
        due = open_tasks.filter(due_at__gte=start, due_at__lt=periods.tomorrow_start).aggregate(
            overdue_today=Count("due_at", filter=Q(due_at__gte=utc_midnight, due_at__lt=now)),
            due_today=Count("due_at", filter=Q(due_at__gte=periods.today_start)),
        )
        overdue = _overdue_before_today(entity, now) + due["overdue_today"]
    else:
        tasks_open = open_tasks.count()
        due = open_tasks.filter(due_at__lt=periods.tomorrow_start).aggregate(
            overdue=Count("due_at", filter=Q(due_at__lt=now)),
            due_today=Count("due_at", filter=Q(due_at__gte=periods.today_start)),
        )
        overdue = due["overdue"]
    since_30 = now - dt.timedelta(days=30)
    recent = activities.filter(occurred_at__gte=since_30, occurred_at__lte=now).aggregate(
        last_7_days=Count("occurred_at", filter=Q(occurred_at__gte=now - dt.timedelta(days=7))),
        last_30_days=Count("occurred_at"),
    )
    return {
        "tasks": {"open": tasks_open, "overdue": overdue, "due_today": due["due_today"]},
        "activities": {"last_7_days": recent["last_7_days"], "last_30_days": recent["last_30_days"]},
    }


def dashboard_summary(*, entity: Entity, owner: OwnerSelector = None, now: dt.datetime | None = None) -> dict:
    """Every figure of the dashboard for `entity`, as plain data for `DashboardSerializer`.

    `owner` (a user id, or "unassigned" for no owner) narrows companies, contacts and leads by
    their owner and tasks by their assignee; `activities` are the whole entity's. Money figures are
    lists of `{"currency", "amount"}` with Decimal amounts, one entry per currency that has at
    least one valued lead in the figure (an empty list when none).
    """
    periods = DashboardPeriods.at(now=now or timezone.now(), tz=entity.tzinfo)
    if owner is None and counters_supported():
        contacts_total = counter_value(entity.pk, "contact")
    else:
        contacts_total = Contact.objects.for_entity(entity).filter(owner_q(owner, "owner")).count()
    return {
        "companies": _company_figures(entity=entity, owner=owner),
        "contacts": {"total": contacts_total},
        **_lead_figures(entity=entity, owner=owner, periods=periods),
        **_activity_figures(entity=entity, owner=owner, periods=periods),
    }
