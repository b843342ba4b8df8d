"""The dashboard's time series: leads won and lost per month, activities per week.

Each series is one `GROUP BY` over a bounded date range (the last 12 calendar months, the last 12
weeks), so the database reads only that range through `lead_entity_closed_idx` /
`activity_entity_time_idx`, however many years of history the entity has. Months and weeks are
calendar periods in the entity's time zone (weeks start on Monday, as ISO weeks do); every
period of the range is present, zero when nothing happened in it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Count
from django.db.models.functions import TruncMonth, TruncWeek
from django.utils import timezone

from axiomatic.models import Entity
from crm.choices import StageKind
from crm.models import Activity, Lead
from crm.selectors.owners import OwnerSelector, owner_q

MONTHS = 12
WEEKS = 12


@dataclass(frozen=True)
class MonthOutcome:
    """Leads now in a won / lost stage whose `closed_at` falls in the month."""

    month: dt.date  # the first day of the month
    won: int = 0
    lost: int = 0


@dataclass(frozen=True)
class WeekActivity:
    """Activities (every type and status) whose `occurred_at` falls in the week."""

    week: dt.date  # the Monday
    count: int = 0


def _local_midnight(day: dt.date, tz: dt.tzinfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=tz)


def _add_months(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + (day.month - 1) + months
    return dt.date(index // 12, index % 12 + 1, 1)


def _local_date(value: dt.datetime | dt.date, tz: dt.tzinfo) -> dt.date:
    """The calendar date of a truncated period (an aware instant, a naive local time or a date)."""
    if isinstance(value, dt.datetime):
        return value.astimezone(tz).date() if timezone.is_aware(value) else value.date()
    return value


def month_starts(*, now: dt.datetime, tz: dt.tzinfo, months: int = MONTHS) -> list[dt.date]:
    """The first days of the last `months` calendar months, oldest first, the current one last."""
    current = now.astimezone(tz).date().replace(day=1)
    return [_add_months(current, offset) for offset in range(-(months - 1), 1)]


def week_starts(*, now: dt.datetime, tz: dt.tzinfo, weeks: int = WEEKS) -> list[dt.date]:
    """The Mondays of the last `weeks` weeks, oldest first, the current week last."""
    today = now.astimezone(tz).date()
    monday = today - dt.timedelta(days=today.weekday())
    return [monday - dt.timedelta(weeks=offset) for offset in range(weeks - 1, -1, -1)]


def won_lost_by_month(
    *, entity: Entity, owner: OwnerSelector = None, now: dt.datetime | None = None, months: int = MONTHS
) -> list[MonthOutcome]:
    """Per calendar month of the last `months` (entity time zone): leads won and lost.

    "Won in March" is what the dashboard's `wonThisMonth` says for the current month: a lead now
    in a won-kind stage whose `closedAt` is in March. Narrowed by owner like the dashboard's leads.
    """
    tz = entity.tzinfo
    now = now or timezone.now()
    starts = month_starts(now=now, tz=tz, months=months)
    rows = (
        Lead.objects.for_entity(entity)
        .filter(
            owner_q(owner, "owner"),
            closed_at__gte=_local_midnight(starts[0], tz),
            closed_at__lt=_local_midnight(_add_months(starts[-1], 1), tz),
            stage__kind__in=[StageKind.WON, StageKind.LOST],
        )
        .annotate(period=TruncMonth("closed_at", tzinfo=tz))
        .order_by()
        .values("period", "stage__kind")
        .annotate(n=Count("*"))  # COUNT(*): answered from the index alone (no filter here)
    )
    counts: dict[tuple[dt.date, str], int] = {}
    for row in rows:  # at most months × 2 rows
        key = (_local_date(row["period"], tz), row["stage__kind"])
        counts[key] = counts.get(key, 0) + row["n"]
    return [
        MonthOutcome(
            month=month, won=counts.get((month, StageKind.WON), 0), lost=counts.get((month, StageKind.LOST), 0)
        )
        for month in starts
    ]


def activities_by_week(*, entity: Entity, now: dt.datetime | None = None, weeks: int = WEEKS) -> list[WeekActivity]:
    """Per week (Monday to Sunday, entity time zone) of the last `weeks`: activities that occurred.

    Up to now, like the dashboard's `last7Days` (future-dated activities are not counted), and for
    the whole entity (activities are not narrowed by owner on the dashboard either).
    """
    tz = entity.tzinfo
    now = now or timezone.now()
    starts = week_starts(now=now, tz=tz, weeks=weeks)
    rows = (
        Activity.objects.for_entity(entity)
        .filter(occurred_at__gte=_local_midnight(starts[0], tz), occurred_at__lte=now)
        .annotate(period=TruncWeek("occurred_at", tzinfo=tz))
        .order_by()
        .values("period")
        .annotate(n=Count("*"))  # COUNT(*): answered from the index alone (no filter here)
    )
    counts: dict[dt.date, int] = {}
    for row in rows:  # at most `weeks` rows
        week = _local_date(row["period"], tz)
        counts[week] = counts.get(week, 0) + row["n"]
    return [WeekActivity(week=week, count=counts.get(week, 0)) for week in starts]
