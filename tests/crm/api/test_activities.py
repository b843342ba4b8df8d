"""`/api/crm/activities` and `POST /api/crm/leads/{id}/activities`."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from crm.models import Activity, LeadEvent
from tests import factories
from tests.helpers import assert_error

ACTIVITIES = "/activities"

FIELDS = {
    "id",
    "type",
    "subject",
    "body",
    "status",
    "occurredAt",
    "dueAt",
    "completedAt",
    "durationMinutes",
    "outcome",
    "leadId",
    "companyId",
    "contactId",
    "projectId",
    "assigneeUserId",
    "createdByUserId",
    "direction",  # emails: outbound or inbound (inbound sync)
    "createdAt",
    "updatedAt",
}


def create(api, **body) -> dict:
    body.setdefault("type", "call")
    body.setdefault("subject", "Intro call")
    response = api.post(ACTIVITIES, body)
    assert response.status_code == 201, response.content
    return response.json()["activity"]


@pytest.fixture
def lead(entity):
    company = factories.make_company(entity, name="Acme")
    contact = factories.make_contact(entity, company=company)
    return factories.make_lead(entity, title="Acme deal", company=company, contact=contact)


# --- POST /leads/{id}/activities ----------------------------------------------------------------


def test_log_on_a_lead_takes_its_company_and_contact_and_records_the_timeline(api, lead, user):
    response = api.post(f"/leads/{lead.pk}/activities", {"type": "call", "subject": "Discovery", "durationMinutes": 30})
    assert response.status_code == 201, response.content
    activity = response.json()["activity"]
    assert set(activity) == FIELDS
    assert activity["leadId"] == str(lead.pk)
    assert activity["companyId"] == str(lead.company_id)
    assert activity["contactId"] == str(lead.contact_id)
    assert activity["status"] == "completed" and activity["completedAt"] is not None
    assert activity["createdByUserId"] == str(user.pk)
    assert activity["assigneeUserId"] is None and activity["projectId"] is None
    [event] = LeadEvent.objects.filter(lead=lead, kind="activity_logged")
    assert event.data["id"] == activity["id"]
    assert event.data["subject"] == "Discovery" and event.data["durationMinutes"] == 30
    assert event.actor_type == "apiKey"
    assert event.summary == "Call logged: Discovery"


def test_log_on_a_lead_with_explicit_company_and_contact(api, entity, lead):
    other_company = factories.make_company(entity)
    activity = api.post(
        f"/leads/{lead.pk}/activities",
        {"type": "note", "subject": "Side note", "companyId": str(other_company.pk), "contactId": None},
    ).json()["activity"]
    assert activity["companyId"] == str(other_company.pk)
    assert activity["contactId"] is None


def test_log_on_a_lead_with_the_same_lead_id_is_fine_and_another_is_400(api, entity, lead):
    ok = api.post(f"/leads/{lead.pk}/activities", {"type": "note", "subject": "x", "leadId": str(lead.pk)})
    assert ok.status_code == 201
    other = factories.make_lead(entity, title="Other")
    body = assert_error(
        api.post(f"/leads/{lead.pk}/activities", {"type": "note", "subject": "x", "leadId": str(other.pk)}), 400
    )
    assert "leadId" in body["details"]
    # null would say "no lead" on a route that names one: refused, as the schema says (not nullable)
    body = assert_error(api.post(f"/leads/{lead.pk}/activities", {"type": "note", "subject": "x", "leadId": None}), 400)
    assert "leadId" in body["details"]


def test_log_a_task_on_a_lead_starts_open(api, lead):
    activity = api.post(f"/leads/{lead.pk}/activities", {"type": "task", "subject": "Send quote"}).json()["activity"]
    assert (activity["status"], activity["completedAt"]) == ("open", None)


@pytest.mark.parametrize(
    "body",
    [
        {"subject": "No type"},
        {"type": "call"},
        {"type": "fax", "subject": "x"},
        {"type": "call", "subject": ""},
        {"type": "call", "subject": "x" * 201},
        {"type": "call", "subject": "x", "status": "done"},
        {"type": "call", "subject": "x", "dueAt": "not-a-date"},
        {"type": "call", "subject": "x", "occurredAt": "2024-13-01T00:00:00Z"},
        {"type": "call", "subject": "x", "durationMinutes": -1},
        {"type": "call", "subject": "x", "projectId": "project-1"},
        {"type": "call", "subject": "x", "assigneeUserId": str(uuid.uuid4())},
        {"type": "call", "subject": "x", "companyId": str(uuid.uuid4())},
    ],
)
def test_log_on_a_lead_with_invalid_input_is_400(api, lead, body):
    assert_error(api.post(f"/leads/{lead.pk}/activities", body), 400)
    assert not Activity.objects.exists()


# --- POST /activities --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("activity_type", "status"),
    [("call", "completed"), ("email", "completed"), ("meeting", "completed"), ("note", "completed"), ("task", "open")],
)
def test_status_defaults_by_type(api, activity_type, status):
    activity = create(api, type=activity_type)
    assert activity["status"] == status
    assert (activity["completedAt"] is not None) == (status == "completed")


def test_create_stores_every_writable_field(api, entity, lead):
    member = factories.make_member(entity)
    project = uuid.uuid4()
    due = (timezone.now() + timedelta(days=2)).replace(microsecond=0)
    activity = create(
        api,
        type="task",
        subject="  Prepare demo  ",
        body="Use the sandbox",
        status="open",
        occurredAt="2030-01-02T03:04:05+02:00",
        dueAt=due.isoformat(),
        durationMinutes=45,
        outcome="",
        leadId=str(lead.pk),
        projectId=str(project),
        assigneeUserId=str(member.pk),
    )
    assert activity["subject"] == "Prepare demo"
    assert activity["occurredAt"] == "2030-01-02T01:04:05.000000Z"
    assert activity["dueAt"] == due.strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    assert activity["projectId"] == str(project)
    assert activity["assigneeUserId"] == str(member.pk)
    assert activity["companyId"] == str(lead.company_id)  # from the lead
    assert LeadEvent.objects.filter(lead=lead, kind="activity_logged").count() == 1


def test_create_without_a_lead_records_no_timeline_event(api):
    create(api)
    assert not LeadEvent.objects.exists()


def test_occurred_at_defaults_to_now(api):
    before = timezone.now()
    activity = create(api)
    assert activity["occurredAt"] >= before.strftime("%Y-%m-%dT%H:%M:%S")


def test_assignee_must_be_a_member(api, other_entity):
    outsider = other_entity.memberships.first().user
    body = assert_error(api.post(ACTIVITIES, {"type": "task", "subject": "x", "assigneeUserId": str(outsider.pk)}), 400)
    assert "assigneeUserId" in body["details"]


def test_ids_of_another_entity_in_the_body_are_400(api, other_entity):
    other_lead = factories.make_lead(other_entity, title="Theirs")
    for field, value in (
        ("leadId", other_lead.pk),
        ("companyId", factories.make_company(other_entity).pk),
        ("contactId", factories.make_contact(other_entity).pk),
    ):
        body = assert_error(api.post(ACTIVITIES, {"type": "call", "subject": "x", field: str(value)}), 400)
        assert field in body["details"]


# --- list ------------------------------------------------------------------------------------


def subjects(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [a["subject"] for a in response.json()["activities"]]


def test_list_newest_occurred_first_and_scoped_to_the_entity(api, other_api):
    now = timezone.now()
    create(api, subject="Old", occurredAt=(now - timedelta(days=3)).isoformat())
    create(api, subject="New", occurredAt=(now - timedelta(hours=1)).isoformat())
    create(api, subject="Middle", occurredAt=(now - timedelta(days=1)).isoformat())
    create(other_api, subject="Theirs")
    body = api.get(ACTIVITIES).json()
    assert [a["subject"] for a in body["activities"]] == ["New", "Middle", "Old"]
    assert (body["total"], body["hasMore"]) == (3, False)


def test_list_filters(api, entity, lead):
    company = factories.make_company(entity)
    contact = factories.make_contact(entity)
    create(api, subject="Lead call", leadId=str(lead.pk))
    create(api, subject="Company note", type="note", companyId=str(company.pk))
    create(api, subject="Contact task", type="task", contactId=str(contact.pk))
    assert subjects(api.get(ACTIVITIES, {"leadId": str(lead.pk)})) == ["Lead call"]
    assert subjects(api.get(ACTIVITIES, {"companyId": str(company.pk)})) == ["Company note"]
    assert subjects(api.get(ACTIVITIES, {"companyId": str(lead.company_id)})) == ["Lead call"]
    assert subjects(api.get(ACTIVITIES, {"contactId": str(contact.pk)})) == ["Contact task"]
    assert subjects(api.get(ACTIVITIES, {"type": "note"})) == ["Company note"]
    assert subjects(api.get(ACTIVITIES, {"leadId": str(uuid.uuid4())})) == []


@pytest.mark.parametrize("params", [{"type": "fax"}, {"leadId": "x"}, {"companyId": "1"}, {"contactId": "nope"}])
def test_list_with_invalid_filter_is_400(api, params):
    assert_error(api.get(ACTIVITIES, params), 400)


# --- retrieve, patch, delete ------------------------------------------------------------------


def test_get_answers_the_wrapped_activity(api):
    activity = create(api)
    assert api.get(f"{ACTIVITIES}/{activity['id']}").json() == {"activity": activity}


def test_completing_sets_completed_at_and_reopening_clears_it(api):
    task = create(api, type="task", subject="Follow up")
    done = api.patch(f"{ACTIVITIES}/{task['id']}", {"status": "completed"}).json()["activity"]
    assert done["status"] == "completed" and done["completedAt"] is not None
    again = api.patch(f"{ACTIVITIES}/{task['id']}", {"status": "completed", "outcome": "Reached"}).json()["activity"]
    assert again["completedAt"] == done["completedAt"]
    reopened = api.patch(f"{ACTIVITIES}/{task['id']}", {"status": "open"}).json()["activity"]
    assert reopened["completedAt"] is None
    cancelled = api.patch(f"{ACTIVITIES}/{task['id']}", {"status": "cancelled"}).json()["activity"]
    assert (cancelled["status"], cancelled["completedAt"]) == ("cancelled", None)


def test_patch_changes_only_the_fields_sent(api, entity):
    member = factories.make_member(entity)
    activity = create(api, type="task", body="keep me")
    body = api.patch(f"{ACTIVITIES}/{activity['id']}", {"assigneeUserId": str(member.pk)}).json()["activity"]
    assert body["assigneeUserId"] == str(member.pk)
    assert (body["body"], body["subject"], body["status"]) == ("keep me", "Intro call", "open")


@pytest.mark.parametrize(
    "body",
    [
        {"status": "finished"},
        {"type": "fax"},
        {"subject": ""},
        {"dueAt": "yesterday"},
        {"assigneeUserId": "me"},
    ],
)
def test_patch_with_invalid_input_is_400(api, body):
    activity = create(api)
    assert_error(api.patch(f"{ACTIVITIES}/{activity['id']}", body), 400)


def test_delete_answers_ok(api, lead):
    activity = api.post(f"/leads/{lead.pk}/activities", {"type": "note", "subject": "x"}).json()["activity"]
    response = api.delete(f"{ACTIVITIES}/{activity['id']}")
    assert response.status_code == 200 and response.json() == {"ok": True}
    assert_error(api.get(f"{ACTIVITIES}/{activity['id']}"), 404)
    assert LeadEvent.objects.filter(lead=lead, kind="activity_logged").exists()  # history stays
