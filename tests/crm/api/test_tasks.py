"""`GET /api/crm/tasks`: tasks only, due order, filters, `due` in the entity's time zone."""

from __future__ import annotations

import uuid
import zoneinfo
from datetime import datetime, time, timedelta

import pytest
from django.utils import timezone

from tests import factories
from tests.helpers import assert_error

TASKS = "/tasks"


def subjects(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [task["subject"] for task in response.json()["tasks"]]


def local_midnight(tz: zoneinfo.ZoneInfo, days: int = 0) -> datetime:
    """Midnight starting the local day `days` after today, in `tz`."""
    today = timezone.now().astimezone(tz).date()
    return datetime.combine(today + timedelta(days=days), time.min, tzinfo=tz)


@pytest.fixture(params=["Pacific/Auckland", "America/Los_Angeles"])
def zoned(request, make_api, user):
    entity = factories.make_entity(name="Zoned Co", owner=user, time_zone=request.param)
    return entity, make_api(entity=entity)


def test_lists_only_tasks_wrapped_with_pagination(api, entity):
    factories.make_task(entity, "A task")
    factories.make_activity(entity, subject="A call")
    body = api.get(TASKS).json()
    assert [t["subject"] for t in body["tasks"]] == ["A task"]
    assert (body["page"], body["pageSize"], body["total"], body["hasMore"]) == (1, 50, 1, False)
    assert body["tasks"][0]["type"] == "task"


def test_order_is_due_ascending_undated_last_then_id(api, entity):
    now = timezone.now()
    undated = sorted(
        [factories.make_task(entity, "Undated 1"), factories.make_task(entity, "Undated 2")], key=lambda t: t.pk
    )
    factories.make_task(entity, "Later", due=now + timedelta(days=3))
    tied = sorted(
        [
            factories.make_task(entity, "Tie 1", due=now + timedelta(days=1)),
            factories.make_task(entity, "Tie 2", due=now + timedelta(days=1)),
        ],
        key=lambda t: t.pk,
    )
    factories.make_task(entity, "Overdue", due=now - timedelta(days=1))
    assert subjects(api.get(TASKS)) == [
        "Overdue",
        tied[0].subject,
        tied[1].subject,
        "Later",
        undated[0].subject,
        undated[1].subject,
    ]


def test_filter_by_status_project_and_assignee(api, entity, user):
    member = factories.make_member(entity)
    project = uuid.uuid4()
    factories.make_task(entity, "Mine", assignee=user, project_id=project)
    factories.make_task(entity, "Theirs", assignee=member)
    factories.make_task(entity, "Done", status="completed", assignee=user)
    factories.make_task(entity, "Nobody's")
    assert subjects(api.get(TASKS, {"status": "completed"})) == ["Done"]
    assert sorted(subjects(api.get(TASKS, {"assigneeUserId": "me"}))) == ["Done", "Mine"]
    assert subjects(api.get(TASKS, {"assigneeUserId": str(member.pk)})) == ["Theirs"]
    assert subjects(api.get(TASKS, {"projectId": str(project)})) == ["Mine"]
    assert subjects(api.get(TASKS, {"projectId": str(uuid.uuid4())})) == []
    assert subjects(api.get(TASKS, {"assigneeUserId": str(uuid.uuid4())})) == []


@pytest.mark.parametrize(
    "params",
    [{"due": "tomorrow"}, {"status": "done"}, {"assigneeUserId": "someone"}, {"projectId": "p1"}],
)
def test_invalid_filters_are_400(api, params):
    assert_error(api.get(TASKS, params), 400)


def test_overdue_is_before_now_and_open(api, entity):
    now = timezone.now()
    factories.make_task(entity, "Late", due=now - timedelta(minutes=5))
    factories.make_task(entity, "Late but done", due=now - timedelta(minutes=5), status="completed")
    factories.make_task(entity, "Late but cancelled", due=now - timedelta(days=5), status="cancelled")
    factories.make_task(entity, "Soon", due=now + timedelta(minutes=5))
    factories.make_task(entity, "Undated")
    assert subjects(api.get(TASKS, {"due": "overdue"})) == ["Late"]


def test_today_is_the_local_day_of_the_entity_time_zone(zoned):
    entity, api = zoned
    tz = entity.tzinfo
    start, end = local_midnight(tz), local_midnight(tz, 1)
    factories.make_task(entity, "Yesterday, last microsecond", due=start - timedelta(microseconds=1))
    factories.make_task(entity, "Today, at midnight", due=start)
    factories.make_task(entity, "Today, last second", due=end - timedelta(seconds=1))
    factories.make_task(entity, "Tomorrow, at midnight", due=end)
    factories.make_task(entity, "Undated")
    assert subjects(api.get(TASKS, {"due": "today"})) == ["Today, at midnight", "Today, last second"]


def test_week_is_today_through_the_next_six_local_days(zoned):
    entity, api = zoned
    tz = entity.tzinfo
    start, end = local_midnight(tz), local_midnight(tz, 7)
    factories.make_task(entity, "Before today", due=start - timedelta(seconds=1))
    factories.make_task(entity, "Today", due=start)
    factories.make_task(entity, "Day six, last second", due=end - timedelta(seconds=1))
    factories.make_task(entity, "Day seven", due=end)
    factories.make_task(entity, "Done this week", due=start + timedelta(days=2), status="completed")
    assert subjects(api.get(TASKS, {"due": "week"})) == ["Today", "Done this week", "Day six, last second"]
    assert subjects(api.get(TASKS, {"due": "week", "status": "open"})) == ["Today", "Day six, last second"]


def test_tasks_created_over_the_api_show_up(api, entity):
    due = local_midnight(entity.tzinfo) + timedelta(hours=9)
    api.post("/activities", {"type": "task", "subject": "Call back", "dueAt": due.isoformat()})
    api.post("/activities", {"type": "note", "subject": "Not a task"})
    [task] = api.get(TASKS, {"due": "today"}).json()["tasks"]
    assert (task["subject"], task["status"], task["completedAt"]) == ("Call back", "open", None)
