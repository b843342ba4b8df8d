"""Open tasks grouped by when they are due: overdue, today, this week, later.

Periods are in the entity's time zone: "today" runs from now to the next local midnight (what is
already past due is overdue), "this week" from tomorrow's local midnight through the end of the
6th day after today (the API's `due=week`: seven local calendar days starting today), "later" is
everything after that, then tasks without a due date.

Each group is its own query over a `due_at` range of the open tasks (the
`activity_entity_task_idx` index on `(entity, type, status, due_at)`), limited to `limit + 1`
rows, so a user with 100,000 overdue tasks costs the same as one with three.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.db.models import Q, QuerySet
from django.utils import timezone

from axiomatic.models import Entity
from crm.choices import ActivityStatus, ActivityType
from crm.models import Activity
from crm.selectors.owners import OwnerSelector, owner_q

GROUP_LIMIT = 50
WEEK_DAYS = 7


@dataclass(frozen=True)
class TaskPeriods:
    """The instants that separate the groups."""

    now: dt.datetime
    tomorrow_start: dt.datetime
    week_end: dt.datetime

    @classmethod
    def at(cls, *, now: dt.datetime, tz: dt.tzinfo) -> TaskPeriods:
        today = now.astimezone(tz).date()

        def midnight(day: dt.date) -> dt.datetime:
            return dt.datetime.combine(day, dt.time.min, tzinfo=tz)

        return cls(
            now=now,
            tomorrow_start=midnight(today + dt.timedelta(days=1)),
            week_end=midnight(today + dt.timedelta(days=WEEK_DAYS)),
        )


@dataclass
class TaskGroup:
    key: str
    label: str
    tasks: list[Activity] = field(default_factory=list)
    has_more: bool = False


def open_tasks(*, entity: Entity, assignee: OwnerSelector) -> QuerySet[Activity]:
    """Open tasks of the entity assigned to `assignee` (a user id, "unassigned", or None for all)."""
    return (
        Activity.objects.for_entity(entity)
        .filter(owner_q(assignee, "assignee"), type=ActivityType.TASK, status=ActivityStatus.OPEN)
        .select_related("lead", "company", "contact", "assignee")
    )


def open_tasks_grouped(
    *, entity: Entity, assignee: OwnerSelector, now: dt.datetime | None = None, limit: int = GROUP_LIMIT
) -> list[TaskGroup]:
    """The groups, each with its first `limit` tasks (soonest due first) and whether more follow."""
    periods = TaskPeriods.at(now=now or timezone.now(), tz=entity.tzinfo)
    tasks = open_tasks(entity=entity, assignee=assignee)
    ranges = [
        ("overdue", "Overdue", Q(due_at__lt=periods.now)),
        ("today", "Today", Q(due_at__gte=periods.now, due_at__lt=periods.tomorrow_start)),
        ("week", "This week", Q(due_at__gte=periods.tomorrow_start, due_at__lt=periods.week_end)),
        ("later", "Later", Q(due_at__gte=periods.week_end)),
    ]
    groups = []
    for key, label, condition in ranges:
        rows = list(tasks.filter(condition).order_by("due_at", "id")[: limit + 1])
        groups.append(TaskGroup(key=key, label=label, tasks=rows[:limit], has_more=len(rows) > limit))
    # Undated tasks come last (as the API orders them), after the dated ones; always one query, so
    # the page costs the same number of queries whatever the data.
    later = groups[-1]
    undated = list(tasks.filter(due_at__isnull=True).order_by("created_at", "id")[: limit + 1])
    room = limit - len(later.tasks)
    later.has_more = later.has_more or len(undated) > room
    later.tasks += undated[:room]
    return groups


def task_group_key(task: Activity, *, entity: Entity, now: dt.datetime | None = None) -> str:
    """Which group an open task belongs to now (for a task just rescheduled)."""
    periods = TaskPeriods.at(now=now or timezone.now(), tz=entity.tzinfo)
    if task.due_at is None or task.due_at >= periods.week_end:
        return "later"
    if task.due_at < periods.now:
        return "overdue"
    return "today" if task.due_at < periods.tomorrow_start else "week"
