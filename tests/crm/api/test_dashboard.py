"""`GET /api/crm/dashboard`: every figure asserted exactly on a hand-built data set.

The entity lives in Pacific/Auckland (UTC+13 in November), so its month starts on the previous
day in UTC: a lead closed at 2026-10-31T12:00Z was closed in November locally. The service takes
`now`, so one test pins it to 2026-11-10T00:00Z; the HTTP tests build the same data relative to
the real clock (boundary instants that are always in the past), so they hold at any time.
"""

from __future__ import annotations

import datetime as dt
import uuid
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from crm.api.dashboard import DashboardSerializer
from crm.models import Activity, PipelineStage
from crm.selectors.dashboard import DashboardPeriods, dashboard_summary
from tests import factories
from tests.factories import make_activity, make_lead
from tests.helpers import assert_error

pytestmark = pytest.mark.django_db

UTC = dt.UTC
TZ = "Pacific/Auckland"


@pytest.fixture
def nz_entity(user):
    return factories.make_entity(name="Kiwi Ltd", owner=user, time_zone=TZ)


@pytest.fixture
def bob(nz_entity):
    return factories.make_member(nz_entity, name="Bob Seller")


@pytest.fixture
def nz_api(make_api, nz_entity, user):
    return make_api(entity=nz_entity, user=user)


def build_dataset(entity, *, alice, bob, now, in_month, before_month, other_entity=None):
    """The data set; `in_month` lies in the current local month, `before_month` in the previous one.

    Both must be at most `now` and within the last 90 days; the expected figures below assume it.
    """
    periods = DashboardPeriods.at(now=now, tz=entity.tzinfo)
    old = now - dt.timedelta(days=100)

    # Companies: 5, three active; alice owns three of them, one has no owner.
    factories.make_company(entity, role="prospect", status="active", owner=alice)
    factories.make_company(entity, role="customer", status="active", owner=bob)
    factories.make_company(entity, role="vendor", status="inactive", owner=None)
    factories.make_company(entity, role="both", status="active", owner=alice)
    factories.make_company(entity, role="prospect", status="inactive", owner=alice)
    # Contacts: 4; alice owns two.
    factories.make_contact(entity, owner=alice)
    factories.make_contact(entity, owner=alice)
    factories.make_contact(entity, owner=bob)
    factories.make_contact(entity, owner=None)

    # Open leads.
    make_lead(entity, "new", value="1000.00", probability_pct=10, owner=alice, created_at=in_month)
    make_lead(entity, "new", currency="EUR", value="500.00", probability_pct=15, owner=bob, created_at=before_month)
    make_lead(entity, "proposal", value="333.33", probability_pct=33, owner=alice, created_at=old)  # 109.9989
    # Two leads whose weighted values (0.005 each) round up to 0.01 each: 0.02, not round(0.01).
    make_lead(entity, "contacted", value="0.05", probability_pct=10, owner=None, created_at=in_month)
    make_lead(entity, "contacted", value="0.05", probability_pct=10, owner=None, created_at=in_month)
    make_lead(entity, "negotiation", value=None, probability_pct=80, owner=alice, created_at=before_month)
    # Won leads.
    make_lead(entity, "won", value="5000.00", probability_pct=100, owner=alice, created_at=old, closed_at=in_month)
    make_lead(
        entity,
        "won",
        currency="EUR",
        value="1200.50",
        probability_pct=100,
        owner=bob,
        created_at=in_month,
        closed_at=in_month,
    )
    make_lead(entity, "won", value="700.00", probability_pct=100, owner=alice, created_at=old, closed_at=before_month)
    make_lead(entity, "won", value="999.00", probability_pct=100, owner=alice, created_at=old, closed_at=old)
    # Lost leads.
    make_lead(entity, "lost", value="300.00", probability_pct=0, owner=bob, created_at=before_month, closed_at=in_month)
    make_lead(
        entity,
        "lost",
        currency="EUR",
        value="50.00",
        probability_pct=0,
        owner=alice,
        created_at=old,
        closed_at=before_month,
    )
    make_lead(entity, "lost", value=None, probability_pct=0, owner=None, created_at=old, closed_at=old)

    # Tasks (their occurredAt is long ago, except the first one's).
    long_ago = now - dt.timedelta(days=60)
    task = {"type": "task"}  # open
    make_activity(
        entity, **task, occurred_at=now - dt.timedelta(days=3), due_at=now - dt.timedelta(days=2), assignee=alice
    )
    make_activity(entity, **task, occurred_at=long_ago, due_at=periods.today_start, assignee=bob)  # overdue + today
    make_activity(
        entity,
        **task,
        occurred_at=long_ago,
        due_at=periods.tomorrow_start - dt.timedelta(microseconds=1),
        assignee=alice,
    )
    make_activity(entity, **task, occurred_at=long_ago, due_at=periods.tomorrow_start, assignee=None)  # tomorrow
    make_activity(entity, **task, occurred_at=long_ago, due_at=None, assignee=alice)
    make_activity(entity, type="task", status="completed", occurred_at=long_ago, due_at=now - dt.timedelta(days=1))
    make_activity(entity, type="task", status="cancelled", occurred_at=long_ago, due_at=periods.today_start)
    # Other activities.
    make_activity(entity, type="call", occurred_at=now - dt.timedelta(hours=1), assignee=bob)
    make_activity(entity, type="note", occurred_at=now - dt.timedelta(days=6))
    make_activity(entity, type="meeting", occurred_at=now - dt.timedelta(days=8))
    make_activity(entity, type="email", occurred_at=now - dt.timedelta(days=29))
    make_activity(entity, type="call", occurred_at=now - dt.timedelta(days=31))
    make_activity(entity, type="meeting", occurred_at=now + dt.timedelta(days=2))  # scheduled: not counted

    if other_entity is not None:  # never counted
        factories.make_company(other_entity, role="customer")
        factories.make_contact(other_entity)
        make_lead(other_entity, "won", value="77.00", probability_pct=100, created_at=in_month, closed_at=in_month)
        make_lead(other_entity, "new", value="88.00", probability_pct=50, created_at=in_month)
        make_activity(other_entity, **task, occurred_at=now - dt.timedelta(hours=2), due_at=now - dt.timedelta(days=1))


def money(*pairs) -> list[dict]:
    return [{"currency": currency, "amount": amount} for currency, amount in pairs]


def stage_row(stages, key, count, value=(), weighted=()) -> dict:
    stage = stages[key]
    return {
        "stageId": str(stage.pk),
        "name": stage.name,
        "kind": stage.kind,
        "leadCount": count,
        "value": money(*value),
        "weightedValue": money(*weighted),
    }


def expected_all(entity) -> dict:
    stages = {s.system_key: s for s in PipelineStage.objects.for_entity(entity)}
    return {
        "companies": {"total": 5, "active": 3, "byRole": {"prospect": 2, "customer": 1, "vendor": 1, "both": 1}},
        "contacts": {"total": 4},
        "leads": {"open": 6, "won": 4, "lost": 3, "createdThisMonth": 4, "wonThisMonth": 2, "lostThisMonth": 1},
        "pipeline": [
            stage_row(stages, "new", 2, [("EUR", "500.00"), ("USD", "1000.00")], [("EUR", "75.00"), ("USD", "100.00")]),
            stage_row(stages, "contacted", 2, [("USD", "0.10")], [("USD", "0.02")]),
            stage_row(stages, "qualified", 0),
            stage_row(stages, "proposal", 1, [("USD", "333.33")], [("USD", "110.00")]),
            stage_row(stages, "negotiation", 1),
            stage_row(
                stages, "won", 4, [("EUR", "1200.50"), ("USD", "6699.00")], [("EUR", "1200.50"), ("USD", "6699.00")]
            ),
            stage_row(stages, "lost", 3, [("EUR", "50.00"), ("USD", "300.00")], [("EUR", "0.00"), ("USD", "0.00")]),
        ],
        "totals": {
            "openValue": money(("EUR", "500.00"), ("USD", "1333.43")),
            "weightedOpenValue": money(("EUR", "75.00"), ("USD", "210.02")),
            "wonValueThisMonth": money(("EUR", "1200.50"), ("USD", "5000.00")),
        },
        "tasks": {"open": 5, "overdue": 2, "dueToday": 2},
        "activities": {"last7Days": 3, "last30Days": 5},
        "winRate90Days": 0.6,  # won 3, lost 2 closed in the last 90 days
    }


def expected_alice(entity) -> dict:
    stages = {s.system_key: s for s in PipelineStage.objects.for_entity(entity)}
    return {
        "companies": {"total": 3, "active": 2, "byRole": {"prospect": 2, "customer": 0, "vendor": 0, "both": 1}},
        "contacts": {"total": 2},
        "leads": {"open": 3, "won": 3, "lost": 1, "createdThisMonth": 1, "wonThisMonth": 1, "lostThisMonth": 0},
        "pipeline": [
            stage_row(stages, "new", 1, [("USD", "1000.00")], [("USD", "100.00")]),
            stage_row(stages, "contacted", 0),
            stage_row(stages, "qualified", 0),
            stage_row(stages, "proposal", 1, [("USD", "333.33")], [("USD", "110.00")]),
            stage_row(stages, "negotiation", 1),
            stage_row(stages, "won", 3, [("USD", "6699.00")], [("USD", "6699.00")]),
            stage_row(stages, "lost", 1, [("EUR", "50.00")], [("EUR", "0.00")]),
        ],
        "totals": {
            "openValue": money(("USD", "1333.33")),
            "weightedOpenValue": money(("USD", "210.00")),
            "wonValueThisMonth": money(("USD", "5000.00")),
        },
        "tasks": {"open": 3, "overdue": 1, "dueToday": 1},
        "activities": {"last7Days": 3, "last30Days": 5},  # activities are never narrowed by owner
        "winRate90Days": 0.6667,  # won 2, lost 1
    }


def expected_unassigned(entity) -> dict:
    stages = {s.system_key: s for s in PipelineStage.objects.for_entity(entity)}
    return {
        "companies": {"total": 1, "active": 0, "byRole": {"prospect": 0, "customer": 0, "vendor": 1, "both": 0}},
        "contacts": {"total": 1},
        "leads": {"open": 2, "won": 0, "lost": 1, "createdThisMonth": 2, "wonThisMonth": 0, "lostThisMonth": 0},
        "pipeline": [
            stage_row(stages, "new", 0),
            stage_row(stages, "contacted", 2, [("USD", "0.10")], [("USD", "0.02")]),
            stage_row(stages, "qualified", 0),
            stage_row(stages, "proposal", 0),
            stage_row(stages, "negotiation", 0),
            stage_row(stages, "won", 0),
            stage_row(stages, "lost", 1),
        ],
        "totals": {
            "openValue": money(("USD", "0.10")),
            "weightedOpenValue": money(("USD", "0.02")),
            "wonValueThisMonth": [],
        },
        "tasks": {"open": 1, "overdue": 0, "dueToday": 0},
        "activities": {"last7Days": 3, "last30Days": 5},
        "winRate90Days": None,  # its only closed lead was closed 100 days ago
    }


def expected_nobody(entity) -> dict:
    stages = PipelineStage.objects.for_entity(entity).order_by("sort_order")
    return {
        "companies": {"total": 0, "active": 0, "byRole": {"prospect": 0, "customer": 0, "vendor": 0, "both": 0}},
        "contacts": {"total": 0},
        "leads": {"open": 0, "won": 0, "lost": 0, "createdThisMonth": 0, "wonThisMonth": 0, "lostThisMonth": 0},
        "pipeline": [stage_row({s.system_key: s for s in stages}, s.system_key, 0) for s in stages],
        "totals": {"openValue": [], "weightedOpenValue": [], "wonValueThisMonth": []},
        "tasks": {"open": 0, "overdue": 0, "dueToday": 0},
        "activities": {"last7Days": 3, "last30Days": 5},
        "winRate90Days": None,
    }


def real_time_dataset(entity, *, alice, bob, other_entity=None):
    """The data set around the real clock: the month's first instant is always in the past."""
    now = timezone.now()
    periods = DashboardPeriods.at(now=now, tz=entity.tzinfo)
    build_dataset(
        entity,
        alice=alice,
        bob=bob,
        now=now,
        in_month=periods.month_start,
        before_month=periods.month_start - dt.timedelta(seconds=1),
        other_entity=other_entity,
    )


# --- the service at a pinned instant -------------------------------------------------------------


def test_periods_follow_the_entity_time_zone_across_the_month_boundary():
    now = dt.datetime(2026, 11, 10, 0, 0, tzinfo=UTC)  # 13:00 on 10 November in Auckland (NZDT, +13)
    periods = DashboardPeriods.at(now=now, tz=ZoneInfo(TZ))
    assert periods.month_start == dt.datetime(2026, 10, 31, 11, 0, tzinfo=UTC)
    assert periods.next_month_start == dt.datetime(2026, 11, 30, 11, 0, tzinfo=UTC)
    assert periods.today_start == dt.datetime(2026, 11, 9, 11, 0, tzinfo=UTC)
    assert periods.tomorrow_start == dt.datetime(2026, 11, 10, 11, 0, tzinfo=UTC)


def test_periods_handle_a_daylight_saving_change_inside_the_month():
    # Auckland leaves daylight saving on 5 April 2026: March starts at +13, April at +12.
    periods = DashboardPeriods.at(now=dt.datetime(2026, 3, 20, tzinfo=UTC), tz=ZoneInfo(TZ))
    assert periods.month_start == dt.datetime(2026, 2, 28, 11, 0, tzinfo=UTC)
    assert periods.next_month_start == dt.datetime(2026, 3, 31, 11, 0, tzinfo=UTC)


def test_every_figure_at_a_pinned_instant_in_auckland(nz_entity, user, bob, other_entity):
    now = dt.datetime(2026, 11, 10, 0, 0, tzinfo=UTC)
    build_dataset(
        nz_entity,
        alice=user,
        bob=bob,
        now=now,
        in_month=dt.datetime(2026, 10, 31, 12, 0, tzinfo=UTC),  # 1 November, 01:00 in Auckland
        before_month=dt.datetime(2026, 10, 31, 10, 0, tzinfo=UTC),  # 31 October, 23:00 in Auckland
        other_entity=other_entity,
    )
    data = DashboardSerializer(dashboard_summary(entity=nz_entity, now=now)).data
    assert data == expected_all(nz_entity)
    data = DashboardSerializer(dashboard_summary(entity=nz_entity, owner=user.pk, now=now)).data
    assert data == expected_alice(nz_entity)
    data = DashboardSerializer(dashboard_summary(entity=nz_entity, owner="unassigned", now=now)).data
    assert data == expected_unassigned(nz_entity)


def test_the_same_instants_fall_in_october_for_a_utc_entity(user):
    entity = factories.make_entity(owner=user, time_zone="UTC")
    closed = dt.datetime(2026, 10, 31, 12, 0, tzinfo=UTC)
    make_lead(entity, "won", value="10.00", probability_pct=100, created_at=closed, closed_at=closed)
    summary = dashboard_summary(entity=entity, now=dt.datetime(2026, 11, 10, tzinfo=UTC))
    assert summary["leads"]["won_this_month"] == 0
    assert summary["leads"]["created_this_month"] == 0
    assert summary["totals"]["won_value_this_month"] == []
    assert summary["win_rate_90_days"] == 1.0


# --- over HTTP, around the real clock ------------------------------------------------------------


def test_every_figure_over_http(nz_api, nz_entity, user, bob, other_entity):
    real_time_dataset(nz_entity, alice=user, bob=bob, other_entity=other_entity)
    response = nz_api.get("/dashboard")
    assert response.status_code == 200, response.content
    assert response.json() == expected_all(nz_entity)


def test_owner_filter_over_http(nz_api, nz_entity, user, bob):
    real_time_dataset(nz_entity, alice=user, bob=bob)
    assert nz_api.get("/dashboard", {"ownerUserId": "me"}).json() == expected_alice(nz_entity)
    assert nz_api.get("/dashboard", {"ownerUserId": str(user.pk)}).json() == expected_alice(nz_entity)
    assert nz_api.get("/dashboard", {"ownerUserId": "unassigned"}).json() == expected_unassigned(nz_entity)
    assert nz_api.get("/dashboard", {"ownerUserId": str(uuid.uuid4())}).json() == expected_nobody(nz_entity)
    assert nz_api.get("/dashboard", {"ownerUserId": ""}).json() == expected_all(nz_entity)


@pytest.mark.parametrize("value", ["nobody", "12345", "me,unassigned"])
def test_malformed_owner_filter_is_400(api, value):
    body = assert_error(api.get("/dashboard", {"ownerUserId": value}), 400)
    assert "ownerUserId" in body["details"]


def test_an_empty_entity_has_zeros_every_role_and_no_win_rate(api, entity):
    body = api.get("/dashboard").json()
    assert body["companies"] == {
        "total": 0,
        "active": 0,
        "byRole": {"prospect": 0, "customer": 0, "vendor": 0, "both": 0},
    }
    assert body["winRate90Days"] is None
    assert [row["name"] for row in body["pipeline"]] == [
        "New",
        "Contacted",
        "Qualified",
        "Proposal",
        "Negotiation",
        "Won",
        "Lost",
    ]
    assert body["totals"] == {"openValue": [], "weightedOpenValue": [], "wonValueThisMonth": []}


def test_pipeline_follows_sort_order(api, entity):
    stages = list(PipelineStage.objects.for_entity(entity).order_by("sort_order"))
    # Swap the first two columns (through a free slot, as sort_order is unique).
    first, second = stages[0], stages[1]
    PipelineStage.objects.filter(pk=first.pk).update(sort_order=99)
    PipelineStage.objects.filter(pk=second.pk).update(sort_order=0)
    PipelineStage.objects.filter(pk=first.pk).update(sort_order=1)
    names = [row["name"] for row in api.get("/dashboard").json()["pipeline"]]
    assert names[:2] == [second.name, first.name]


def test_query_count_does_not_grow_with_leads(api, entity):
    now = timezone.now()

    def count_queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert api.get("/dashboard").status_code == 200
        return len(ctx.captured_queries)

    def leads(n: int) -> None:
        for i in range(n):
            make_lead(
                entity,
                ("new", "won", "lost", "proposal")[i % 4],
                currency=("USD", "EUR", "GBP")[i % 3],
                value=f"{i}.50",
                probability_pct=50,
                created_at=now,
                closed_at=now if i % 4 in (1, 2) else None,
            )
            make_activity(entity, type="task", status="open", occurred_at=now, due_at=now)

    count_queries()  # warm-up: the key's first use records last_used_at
    leads(3)
    few = count_queries()
    leads(37)
    assert count_queries() == few
    # A fixed set of small indexed queries (counters, figures, and one range each for the periods,
    # due tasks and recent activities), plus authentication and the test's savepoints.
    assert few <= 14


def test_overdue_tasks_come_from_day_counters_that_follow_every_write(api, entity, user):
    """Overdue = the open tasks due before now: days before today are summed from per-day
    counters (kept by triggers in the writing transaction), today's part is counted directly.
    Completing, re-dating, re-typing and deleting tasks keep the figure exact."""
    now = timezone.now()
    days_ago = [now - dt.timedelta(days=n, hours=1) for n in (1, 1, 3, 40, 400)]
    tasks = [factories.make_task(entity, f"Late {n}", due=due) for n, due in enumerate(days_ago)]
    factories.make_task(entity, "Earlier today", due=now - dt.timedelta(seconds=30))
    factories.make_task(entity, "Tomorrow", due=now + dt.timedelta(days=1))
    factories.make_task(entity, "Done late", due=days_ago[0], status="completed")
    factories.make_task(entity, "Undated")

    def overdue() -> int:
        with CaptureQueriesContext(connection) as ctx:
            figure = api.get("/dashboard").json()["tasks"]["overdue"]
        assert any("activity.task.open.due:" in q["sql"] for q in ctx.captured_queries)
        return figure

    def direct() -> int:
        return Activity.objects.filter(entity=entity, type="task", status="open", due_at__lt=timezone.now()).count()

    assert overdue() == direct() == 6
    api.patch(f"/activities/{tasks[0].pk}", {"status": "completed"})
    api.patch(f"/activities/{tasks[1].pk}", {"dueAt": (now + dt.timedelta(days=2)).isoformat()})
    api.patch(f"/activities/{tasks[2].pk}", {"type": "call"})
    api.delete(f"/activities/{tasks[3].pk}")
    Activity.objects.filter(pk=tasks[4].pk).update(due_at=now - dt.timedelta(days=2))  # a bulk path
    assert overdue() == direct() == 2


# --- authentication and scopes -------------------------------------------------------------------


def test_no_credentials_is_401(client, entity):
    assert_error(client.get("/api/crm/dashboard", {"entityId": str(entity.pk)}), 401)


@pytest.mark.parametrize("scopes", [("write:crm",), ("read:marketing", "write:marketing")])
def test_needs_read_crm(make_api, scopes):
    assert_error(make_api(scopes=scopes).get("/dashboard"), 403)


def test_read_crm_alone_is_enough(make_api):
    assert make_api(scopes=("read:crm",)).get("/dashboard").status_code == 200


def test_another_entitys_key_is_403(make_api, entity, other_entity, other_user):
    assert_error(make_api(entity=other_entity, user=other_user).get("/dashboard", entity_id=entity.pk), 403)
