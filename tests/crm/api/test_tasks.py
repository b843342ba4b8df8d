"""`GET /api/crm/tasks` (CONTRACT.md §5): tasks only, due order, filters, `due` in the entity's time zone."""

from __future__ import annotations

import uuid
import zoneinfo
from datetime import datetime, time, timedelta

import pytest
from django.utils import timezone

from crm.models import Activity
from tests import factories
from tests.helpers import assert_error

TASKS = "/tasks"


def make_task(entity, subject, *, due=None, status="open", **fields) -> Activity:
    return Activity.objects.create(
        entity=entity, type="task", subject=subject, status=status, occurred_at=timezone.now(), due_at=due, **fields
    )


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
    make_task(entity, "A task")
    Activity.objects.create(
        entity=entity, type="call", subject="A call", status="completed", occurred_at=timezone.now()
    )
    body = api.get(TASKS).json()
    assert [t["subject"] for t in body["tasks"]] == ["A task"]
    assert (body["page"], body["pageSize"], body["total"], body["hasMore"]) == (1, 50, 1, False)
    assert body["tasks"][0]["type"] == "task"


def test_order_is_due_ascending_undated_last_then_id(api, entity):
    now = timezone.now()
    undated = sorted([make_task(entity, "Undated 1"), make_task(entity, "Undated 2")], key=lambda t: t.pk)
    make_task(entity, "Later", due=now + timedelta(days=3))
    tied = sorted(
        [
            make_task(entity, "Tie 1", due=now + timedelta(days=1)),
            make_task(entity, "Tie 2", due=now + timedelta(days=1)),
        ],
        key=lambda t: t.pk,
    )
    make_task(entity, "Overdue", due=now - timedelta(days=1))
    assert subjects(api.get(TASKS)) == [
        "Overdue",
        tied[0].subject,
        tied[1].subject,
        "Later",
        undated[0].subject,
        undated[1].subject,
    ]


def test_other_entitys_tasks_never_show(api, other_entity):
    make_task(other_entity, "Theirs")
    assert subjects(api.get(TASKS)) == []


def test_filter_by_status_project_and_assignee(api, entity, user):
    member = factories.make_member(entity)
    project = uuid.uuid4()
    make_task(entity, "Mine", assignee=user, project_id=project)
    make_task(entity, "Theirs", assignee=member)
    make_task(entity, "Done", status="completed", assignee=user)
    make_task(entity, "Nobody's")
    assert subjects(api.get(TASKS, {"status": "completed"})) == ["Done"]
    assert sorted(subjects(api.get(TASKS, {"assigneeUserId": "me"}))) == ["Done", "Mine"]
    assert subjects(api.get(TASKS, {"assigneeUserId": str(member.pk)})) == ["Theirs"]
    assert subjects(api.get(TASKS, {"projectId": str(project)})) == ["Mine"]
    assert subjects(api.get(TASKS, {"projectId": str(uuid.uuid4())})) == []
    assert subjects(api.get(TASKS, {"assigneeUserId": str(uuid.uuid4())})) == []


@pytest.mark.parametrize(
    "params",
    [{"due": "tomorrow"}, {"status": "done"}, {"assigneeUserId": "someone"}, {"projectId": "p1"}, {"pageSize": 0}],
)
def test_invalid_filters_are_400(api, params):
    assert_error(api.get(TASKS, params), 400)


def test_overdue_is_before_now_and_open(api, entity):
    now = timezone.now()
    make_task(entity, "Late", due=now - timedelta(minutes=5))
    make_task(entity, "Late but done", due=now - timedelta(minutes=5), status="completed")
    make_task(entity, "Late but cancelled", due=now - timedelta(days=5), status="cancelled")
    make_task(entity, "Soon", due=now + timedelta(minutes=5))
    make_task(entity, "Undated")
    assert subjects(api.get(TASKS, {"due": "overdue"})) == ["Late"]


def test_today_is_the_local_day_of_the_entity_time_zone(zoned):
    entity, api = zoned
    tz = entity.tzinfo
    start, end = local_midnight(tz), local_midnight(tz, 1)
    make_task(entity, "Yesterday, last microsecond", due=start - timedelta(microseconds=1))
    make_task(entity, "Today, at midnight", due=start)
    make_task(entity, "Today, last second", due=end - timedelta(seconds=1))
    make_task(entity, "Tomorrow, at midnight", due=end)
    make_task(entity, "Undated")
    assert subjects(api.get(TASKS, {"due": "today"})) == ["Today, at midnight", "Today, last second"]


def test_week_is_today_through_the_next_six_local_days(zoned):
    entity, api = zoned
    tz = entity.tzinfo
    start, end = local_midnight(tz), local_midnight(tz, 7)
    make_task(entity, "Before today", due=start - timedelta(seconds=1))
    make_task(entity, "Today", due=start)
    make_task(entity, "Day six, last second", due=end - timedelta(seconds=1))
    make_task(entity, "Day seven", due=end)
    make_task(entity, "Done this week", due=start + timedelta(days=2), status="completed")
    assert subjects(api.get(TASKS, {"due": "week"})) == ["Today", "Done this week", "Day six, last second"]
    assert subjects(api.get(TASKS, {"due": "week", "status": "open"})) == ["Today", "Day six, last second"]


def test_tasks_created_over_the_api_show_up(api, entity):
    due = local_midnight(entity.tzinfo) + timedelta(hours=9)
    api.post("/activities", {"type": "task", "subject": "Call back", "dueAt": due.isoformat()})
    api.post("/activities", {"type": "note", "subject": "Not a task"})
    [task] = api.get(TASKS, {"due": "today"}).json()["tasks"]
    assert (task["subject"], task["status"], task["completedAt"]) == ("Call back", "open", None)


def test_needs_read_scope_and_credentials(make_api, client, entity):
    assert_error(make_api(scopes=("write:crm",)).get(TASKS), 403)
    assert_error(client.get("/api/crm/tasks", {"entityId": str(entity.pk)}), 401)


@pytest.mark.parametrize("page_size", [5, 50])
def test_query_count_does_not_grow_with_page_size(api, entity, page_size, django_assert_max_num_queries):
    now = timezone.now()
    Activity.objects.bulk_create(
        Activity(entity=entity, type="task", subject=f"T{i}", status="open", occurred_at=now, due_at=now)
        for i in range(60)
    )
    api.get(TASKS)
    with django_assert_max_num_queries(6):
        response = api.get(TASKS, {"pageSize": page_size})
    assert len(response.json()["tasks"]) == page_size
