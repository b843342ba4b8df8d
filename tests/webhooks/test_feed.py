"""The change feed: what each write records, `GET /api/crm/changes`, cursors, retention, isolation.

Tests on `db` use `numbered` (the commit-time numbering fires at once inside the test's
transaction); the concurrency test commits for real (`transactional_db`).
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from axiomatic import changes
from axiomatic.models import Change, EntityCounter
from crm.models import Lead
from crm.services.actors import Actor
from crm.services.companies import company_create
from tests import factories
from tests.helpers import ApiClient
from webhooks import feed
from webhooks.tasks import clean_up


def feed_since(api, cursor=None, **params) -> tuple[list[dict], str]:
    """Every change after `cursor` (following nextCursor to the end) and the final cursor."""
    found = []
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = api.get("/changes", query)
        assert response.status_code == 200, response.content
        body = response.json()
        found += body["changes"]
        cursor = body["nextCursor"]
        if not body["hasMore"]:
            return found, cursor


@pytest.fixture
def start(api, numbered) -> str:
    """The cursor of now (after the entity's default stages)."""
    response = api.get("/changes", {"cursor": "latest"})
    assert response.status_code == 200 and response.json()["changes"] == [] and not response.json()["hasMore"]
    return response.json()["nextCursor"]


def get(api, path: str, key: str) -> dict:
    response = api.get(path)
    assert response.status_code == 200, response.content
    return response.json()[key]


# --- what each write records --------------------------------------------------------------------


def test_a_new_entity_starts_its_feed_with_its_default_stages(api, numbered):
    changes_, _ = feed_since(api)
    assert [c["type"] for c in changes_] == ["pipeline_stage.created"] * 7
    assert [c["seq"] for c in changes_] == list(range(1, 8))
    stages = {s["id"]: s for s in get(api, "/pipeline-stages", "stages")}
    assert all(c["data"] == stages[c["objectId"]] for c in changes_)
    assert all(c["actor"] == {"type": "system", "id": None} and c["previous"] is None for c in changes_)


def test_company_create_and_update_carry_the_get_answer_and_previous(api, start):
    created = api.post("/companies", {"name": "Acme", "domain": "acme.example"}).json()["company"]
    api.patch(f"/companies/{created['id']}", {"name": "Acme Corp", "status": "inactive"})
    changes_, _ = feed_since(api, start)
    assert [c["type"] for c in changes_] == ["company.created", "company.updated"]
    assert changes_[0]["data"] == created
    now = get(api, f"/companies/{created['id']}", "company")
    assert changes_[1]["data"] == now
    assert changes_[1]["previous"] == {
        "name": "Acme",
        "status": "active",
        "archivedAt": None,
        "updatedAt": created["updatedAt"],
    }
    assert changes_[1]["actor"] == {"type": "apiKey", "id": str(api.api_key.pk)}
    assert changes_[0]["id"].startswith("evt_") and changes_[0]["id"] != changes_[1]["id"]
    assert changes_[0]["objectType"] == "company" and changes_[0]["objectId"] == created["id"]
    assert changes_[1]["seq"] == changes_[0]["seq"] + 1


def test_contacts_and_memberships_record_every_object_they_touch(api, start):
    first = api.post("/companies", {"name": "First"}).json()["company"]
    second = api.post("/companies", {"name": "Second"}).json()["company"]
    _, cursor = feed_since(api, start)
    contact = api.post("/contacts", {"firstName": "Carol", "companyId": first["id"]}).json()["contact"]
    created, cursor = feed_since(api, cursor)
    assert [c["type"] for c in created] == ["contact.created", "company_membership.created"]
    assert created[0]["data"] == get(api, f"/contacts/{contact['id']}", "contact")
    memberships = get(api, f"/contacts/{contact['id']}/company-memberships", "memberships")
    assert created[1]["data"] == memberships[0]

    # Switching the primary company: a new membership, the old one demoted, companyId changes.
    api.patch(f"/contacts/{contact['id']}", {"companyId": second["id"]})
    switched, cursor = feed_since(api, cursor)
    by_type = {}
    for change in switched:
        by_type.setdefault(change["type"], []).append(change)
    assert sorted(by_type) == ["company_membership.created", "company_membership.updated", "contact.updated"]
    assert by_type["contact.updated"][0]["previous"]["companyId"] == first["id"]
    assert by_type["contact.updated"][0]["data"]["companyId"] == second["id"]
    assert by_type["company_membership.updated"][0]["previous"]["isPrimary"] is True
    assert by_type["company_membership.updated"][0]["data"]["isPrimary"] is False

    # Deleting the contact: its memberships go with it, leads pointing at it get contactId null.
    lead = api.post("/leads", {"title": "Deal", "contactId": contact["id"]}).json()["lead"]
    _, cursor = feed_since(api, cursor)
    assert api.delete(f"/contacts/{contact['id']}").status_code == 204
    deleted, _ = feed_since(api, cursor)
    types = [c["type"] for c in deleted]
    assert types.count("company_membership.deleted") == 2 and types[-1] == "contact.deleted"
    assert deleted[-1]["data"] == {"id": contact["id"]} and deleted[-1]["previous"] is None
    lead_change = next(c for c in deleted if c["type"] == "lead.updated")
    assert lead_change["previous"] == {"contactId": contact["id"]}
    assert lead_change["data"] == get(api, f"/leads/{lead['id']}", "lead")


def test_a_stage_move_is_one_stage_changed_change(api, start):
    lead = api.post("/leads", {"title": "Deal", "value": "100.00"}).json()["lead"]
    api.patch(f"/leads/{lead['id']}/stage", {"stage": "won"})
    api.patch(f"/leads/{lead['id']}", {"stage": "lost", "title": "Lost deal", "lostReason": "Budget"})
    api.patch(f"/leads/{lead['id']}", {"title": "Lost deal, really"})
    changes_, _ = feed_since(api, start)
    assert [c["type"] for c in changes_] == ["lead.created", "lead.stage_changed", "lead.stage_changed", "lead.updated"]
    won = changes_[1]
    assert won["previous"]["stageId"] == lead["stageId"] and won["previous"]["status"] == "open"
    assert won["data"]["status"] == "won" and won["previous"]["closedAt"] is None
    both = changes_[2]  # a move and an edit in one PATCH: one change
    assert both["previous"]["title"] == "Deal" and both["data"]["title"] == "Lost deal"
    assert both["data"]["lostReason"] == "Budget" and both["previous"]["status"] == "won"
    assert changes_[3]["data"] == get(api, f"/leads/{lead['id']}", "lead")
    assert set(changes_[3]["previous"]) == {"title", "updatedAt"}


def test_lead_deletion_records_its_activities_losing_their_lead(api, start):
    lead = api.post("/leads", {"title": "Deal"}).json()["lead"]
    activity = api.post(f"/leads/{lead['id']}/activities", {"type": "call", "subject": "Call"}).json()["activity"]
    task = api.post("/activities", {"type": "task", "subject": "Follow up"}).json()["activity"]
    api.patch(f"/activities/{task['id']}", {"status": "completed"})
    api.delete(f"/leads/{lead['id']}")
    api.delete(f"/activities/{task['id']}")
    changes_, _ = feed_since(api, start)
    assert [c["type"] for c in changes_] == [
        "lead.created",
        "activity.created",
        "activity.created",
        "activity.updated",
        "activity.updated",
        "lead.deleted",
        "activity.deleted",
    ]
    assert changes_[1]["data"] == activity and changes_[2]["data"] == task
    assert changes_[3]["previous"]["status"] == "open" and changes_[3]["data"]["completedAt"]
    assert changes_[4]["objectId"] == activity["id"] and changes_[4]["previous"] == {"leadId": lead["id"]}
    assert changes_[4]["data"] == get(api, f"/activities/{activity['id']}", "activity")


def test_stage_writes_and_the_bulk_move_of_a_stage_deletion(api, start, entity):
    stage = api.post("/pipeline-stages", {"name": "Trial"}).json()["stage"]
    leads = [api.post("/leads", {"title": f"Deal {n}", "stageId": stage["id"]}).json()["lead"] for n in range(3)]
    _, cursor = feed_since(api, start)
    stages = get(api, "/pipeline-stages", "stages")
    api.post("/pipeline-stages/reorder", {"stageIds": [s["id"] for s in reversed(stages)]})
    reordered, cursor = feed_since(api, cursor)
    assert {c["type"] for c in reordered} == {"pipeline_stage.updated"} and len(reordered) == len(stages)
    assert all(set(c["previous"]) == {"sortOrder"} for c in reordered)

    target = factories.stage(entity, "won")
    response = api.delete(f"/pipeline-stages/{stage['id']}", {"moveLeadsToStageId": str(target.pk)})
    assert response.json() == {"ok": True, "movedLeadCount": 3}
    deleted, _ = feed_since(api, cursor)
    types = [c["type"] for c in deleted]
    assert types[:3] == ["lead.stage_changed"] * 3 and types[3] == "pipeline_stage.deleted"
    assert set(types[4:]) == {"pipeline_stage.updated"}  # the others close up their sortOrder
    for change in deleted[:3]:
        assert change["previous"]["stageId"] == stage["id"] and change["data"]["status"] == "won"
        assert change["data"] == get(api, f"/leads/{change['objectId']}", "lead")
    assert {c["objectId"] for c in deleted[:3]} == {lead["id"] for lead in leads}


def test_marketing_lists_members_and_the_bulk_add(api, start, entity):
    contacts = [factories.make_contact(entity, email=f"p{n}@example.com") for n in range(3)]
    marketing = ApiClient(api.client, secret=api.secret, entity=entity, user=api.user, prefix="/api/marketing")
    listing = marketing.post("/lists", {"name": "Newsletter"}).json()["list"]
    added = api.post(
        "/prospecting/add-to-marketing-list", {"listId": listing["id"], "contactIds": [str(c.pk) for c in contacts]}
    )
    assert added.json()["added"] == 3
    members = marketing.get(f"/lists/{listing['id']}/members").json()["members"]
    member = members[0]
    marketing.post(f"/lists/{listing['id']}/members/{member['id']}/unsubscribe", {})
    marketing.patch(f"/lists/{listing['id']}", {"description": "Monthly"})
    marketing.delete(f"/lists/{listing['id']}")
    changes_, _ = feed_since(api, start)
    types = [c["type"] for c in changes_]
    assert types[:4] == ["marketing_list.created"] + ["marketing_list_member.created"] * 3
    assert changes_[0]["data"] == listing
    assert {c["objectId"] for c in changes_[1:4]} == {m["id"] for m in members}
    assert {c["objectId"]: c["data"] for c in changes_[1:4]} == {m["id"]: m for m in members}
    assert types[4:6] == ["marketing_list_member.updated", "marketing_list.updated"]
    assert changes_[4]["previous"] == {"status": "subscribed"}
    assert changes_[5]["previous"] == {"description": ""}
    assert types[6:] == ["marketing_list_member.deleted"] * 3 + ["marketing_list.deleted"]


def test_pages_record_the_signed_in_user_and_tasks_the_system(client, user, entity, api, start):
    client.force_login(user)
    response = client.post(
        f"/crm/companies/new?entityId={entity.pk}", {"name": "Paged", "role": "prospect", "status": "active"}
    )
    assert response.status_code in (302, 303), response.content[:500]
    with transaction.atomic():
        company_create(entity=entity, name="Made by a task")
    changes_, _ = feed_since(api, start)
    assert [(c["data"]["name"], c["actor"]) for c in changes_] == [
        ("Paged", {"type": "user", "id": str(user.pk)}),
        ("Made by a task", {"type": "system", "id": None}),
    ]


def test_admin_saves_and_deletions_are_recorded(staff_client, api, start, entity):
    company = factories.make_company(entity, name="Admin Co")
    contact = factories.make_contact(entity, company=company, email="c@admin.example")
    lead = factories.make_lead(entity, title="Deal", company=company)
    membership = contact.memberships.get()
    response = staff_client.post(f"/admin/crm/company/{company.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302, response.content[:300]
    changes_, cursor = feed_since(api, start)
    by_type = {c["type"]: c for c in changes_}
    assert [c["type"] for c in changes_][-1] == "company.deleted" and len(changes_) == 4
    assert by_type["company_membership.deleted"]["data"] == {"id": str(membership.pk)}
    assert by_type["contact.updated"]["previous"] == {"companyId": str(company.pk)}
    assert by_type["contact.updated"]["data"]["companyId"] is None
    assert by_type["lead.updated"]["objectId"] == str(lead.pk)
    assert by_type["lead.updated"]["previous"] == {"companyId": str(company.pk)}
    assert all(c["actor"]["type"] == "user" for c in changes_)

    # A save through a model admin without a service of its own (marketing lists) is recorded too.
    marketing_list = factories.make_list(entity, name="Admin list")
    response = staff_client.post(
        f"/admin/marketing/marketinglist/{marketing_list.pk}/change/",
        {"entity": str(entity.pk), "name": "Renamed list", "description": "", **_empty_inline("members")},
    )
    assert response.status_code == 302, response.content[:500]
    renamed, _ = feed_since(api, cursor)
    assert [(c["type"], c["previous"]) for c in renamed] == [("marketing_list.updated", {"name": "Admin list"})]


def _empty_inline(prefix: str) -> dict:
    return {f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0", f"{prefix}-MIN_NUM_FORMS": "0"}


# --- a rolled-back write leaves no change -------------------------------------------------------


def test_a_refused_or_rolled_back_write_leaves_no_change(api, start, entity):
    api.post("/companies", {"name": "Taken", "domain": "taken.example"})
    _, cursor = feed_since(api, start)
    assert api.post("/companies", {"name": "Again", "domain": "taken.example"}).status_code == 409
    with pytest.raises(RuntimeError), transaction.atomic():
        company_create(entity=entity, name="Rolled back")
        raise RuntimeError("after the change was recorded")
    assert feed_since(api, cursor)[0] == []
    assert not Change.objects.filter(entity_id=entity.pk, data__contains="Rolled back").exists()


def test_recording_is_one_insert(entity, numbered, django_assert_num_queries):
    company = factories.make_company(entity, name="Counted")
    before = changes.snapshot(company)
    company.name = "Counted again"
    company.save()
    with django_assert_num_queries(2) as captured:  # the INSERT, and the webhook endpoints of the entity
        changes.record_updated(company, before)
    statements = [q["sql"].split()[0].upper() for q in captured.captured_queries]
    assert statements.count("INSERT") == 1


# --- the feed API -------------------------------------------------------------------------------


def test_types_filter_with_wildcards_and_the_limit(api, start):
    lead = api.post("/leads", {"title": "Deal"}).json()["lead"]
    api.post("/companies", {"name": "Co"})
    api.patch(f"/leads/{lead['id']}/stage", {"stage": "won"})
    only_leads, _ = feed_since(api, start, types="lead.*")
    assert [c["type"] for c in only_leads] == ["lead.created", "lead.stage_changed"]
    created, _ = feed_since(api, start, types="*.created,company.*")
    assert [c["type"] for c in created] == ["lead.created", "company.created"]
    page = api.get("/changes", {"cursor": start, "limit": 2}).json()
    assert len(page["changes"]) == 2 and page["hasMore"] is True
    rest = api.get("/changes", {"cursor": page["nextCursor"], "limit": 2}).json()
    assert [c["type"] for c in rest["changes"]] == ["lead.stage_changed"] and rest["hasMore"] is False
    assert rest["changes"][0]["seq"] == page["changes"][-1]["seq"] + 1
    for bad in (
        {"limit": "0"},
        {"limit": "501"},
        {"limit": "ten"},
        {"limit": "٣"},
        {"limit": "9" * 5000},
        {"types": "nothing.here"},
        {"types": "lead.%"},
    ):
        response = api.get("/changes", bad)
        assert response.status_code == 400, (bad, response.content)
        assert next(iter(bad)) in response.json()["details"]


def test_a_filtered_reader_moves_past_changes_it_does_not_want(api, start):
    api.post("/companies", {"name": "Co"})
    page = api.get("/changes", {"cursor": start, "types": "lead.*"}).json()
    assert page["changes"] == [] and page["hasMore"] is False
    lead = api.post("/leads", {"title": "Deal"}).json()["lead"]
    later = api.get("/changes", {"cursor": page["nextCursor"], "types": "lead.*"}).json()
    assert [c["objectId"] for c in later["changes"]] == [lead["id"]]


def test_cursors_are_the_entitys_own_and_checked(api, other_api, start, other_entity):
    assert api.get("/changes", {"cursor": "garbage"}).status_code == 400
    foreign = other_api.get("/changes", {"cursor": "latest"}).json()["nextCursor"]
    response = api.get("/changes", {"cursor": foreign})
    assert response.status_code == 400 and "cursor" in response.json()["details"]
    # Each entity sees its own changes only.
    api.post("/companies", {"name": "Mine"})
    other_api.post("/companies", {"name": "Theirs"})
    mine, _ = feed_since(api, start)
    theirs, _ = feed_since(other_api, foreign)
    assert [c["data"]["name"] for c in mine] == ["Mine"] and [c["data"]["name"] for c in theirs] == ["Theirs"]


def test_members_read_the_feed_with_read_scope_only(make_api, entity, numbered):
    reader = make_api(user=factories.make_member(entity), scopes=("read:crm",))
    assert reader.get("/changes").status_code == 200
    no_scope = make_api(scopes=("read:marketing",))
    response = no_scope.get("/changes")
    assert response.status_code == 403 and "read:crm" in response.json()["error"]


def test_retention_removes_old_changes_and_old_cursors_are_410(api, start, entity, settings):
    api.post("/companies", {"name": "Old"})
    old_cursor = api.get("/changes", {"cursor": start}).json()["nextCursor"]
    api.post("/companies", {"name": "Kept"})
    Change.objects.filter(entity_id=entity.pk).exclude(data__contains="Kept").update(
        occurred_at=timezone.now() - timedelta(days=40)
    )
    removed = clean_up()
    assert removed["changes"] == 8  # the seven stages and "Old"
    response = api.get("/changes", {"cursor": start})
    assert response.status_code == 410 and "cursor" in response.json()["error"].lower()
    kept, _ = feed_since(api, old_cursor)  # a cursor at the pruned end still works
    assert [c["data"]["name"] for c in kept] == ["Kept"]
    oldest, _ = feed_since(api)  # no cursor: from the oldest change kept
    assert [c["data"]["name"] for c in oldest] == ["Kept"]
    settings.CHANGES_RETENTION_DAYS = 0.00001  # about a second: the cursor's own age counts too
    time.sleep(1.1)
    assert api.get("/changes", {"cursor": old_cursor}).status_code == 410


# --- concurrency ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_following_the_feed_under_eight_concurrent_writers_never_skips_nor_repeats(entity, user):
    """8 threads write through the API (creates, updates, stage moves) while a reader follows
    nextCursor; afterwards the reader has seen every change exactly once, in seq order, and the
    feed's seqs are 1..n without a gap."""
    writers, per_writer = 8, 12
    issued = factories.make_key(entity, user)

    def client() -> ApiClient:
        return ApiClient(Client(), secret=issued.secret, entity=entity, user=user, api_key=issued.api_key)

    errors: list = []
    done = threading.Event()
    seen: list[dict] = []

    def write(n: int) -> None:
        api = client()
        try:
            for i in range(per_writer):
                if i % 3 == 0:
                    lead = api.post("/leads", {"title": f"w{n}-{i}"})
                    assert lead.status_code == 201, lead.content
                    lead_id = lead.json()["lead"]["id"]
                elif i % 3 == 1:
                    assert api.patch(f"/leads/{lead_id}", {"title": f"w{n}-{i}"}).status_code == 200
                else:
                    assert api.patch(f"/leads/{lead_id}/stage", {"stage": "qualified"}).status_code == 200
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    def read() -> None:
        api = client()
        cursor = None
        try:
            while True:
                finished = done.is_set()
                page = api.get("/changes", {"limit": 7, **({"cursor": cursor} if cursor else {})})
                assert page.status_code == 200, page.content
                body = page.json()
                seen.extend(body["changes"])
                cursor = body["nextCursor"]
                if finished and not body["hasMore"]:
                    return
                if not body["hasMore"]:
                    time.sleep(0.01)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    reader = threading.Thread(target=read)
    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    reader.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
        assert not thread.is_alive()
    done.set()
    reader.join(timeout=120)
    assert not reader.is_alive()
    assert not errors, errors

    seqs = [c["seq"] for c in seen]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs)), "repeated or out of order"
    stored = list(Change.objects.filter(entity_id=entity.pk).order_by("seq").values_list("seq", flat=True))
    assert stored == list(range(1, len(stored) + 1)), "the seqs have a gap"
    assert seqs == stored, "the reader skipped changes"
    assert len(stored) == 7 + writers * per_writer  # the stages, then one change per write
    # The changes of one lead are in the order they happened.
    for lead in Lead.objects.filter(entity=entity):
        titles = [c["data"]["title"] for c in seen if c["objectId"] == str(lead.pk)]
        assert titles == sorted(titles, key=lambda t: int(t.split("-")[1])), titles
    counter = EntityCounter.objects.get(entity_id=entity.pk, name=changes.SEQ_COUNTER)
    assert counter.value == len(stored)


def test_changes_of_another_entity_are_never_read(api, other_api, start, other_entity):
    other_api.post("/companies", {"name": "Theirs"})
    assert feed_since(api, start)[0] == []
    assert feed.max_visible_seq(uuid.uuid4()) == 0


def test_the_system_actor_of_a_service_given_one(entity, api, start):
    lead = factories.make_lead(entity, title="Deal")
    from crm.services.leads import lead_move_stage

    lead_move_stage(lead=lead, stage=factories.stage(entity, "won"), actor=Actor.system())
    changes_, _ = feed_since(api, start)
    assert changes_[-1]["type"] == "lead.stage_changed" and changes_[-1]["actor"] == {"type": "system", "id": None}
