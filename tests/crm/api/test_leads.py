"""`/api/crm/leads`: fields, defaults, filters, stage moves, deletion, admin moves."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.contrib import admin
from django.test import RequestFactory
from django.utils import timezone

from crm.admin import LeadAdmin
from crm.choices import LeadEventKind
from crm.models import Activity, Lead, LeadEvent
from tests import factories
from tests.helpers import assert_error

LEADS = "/leads"


def create(api, **body) -> dict:
    body.setdefault("title", "Big deal")
    response = api.post(LEADS, body)
    assert response.status_code == 201, response.content
    return response.json()["lead"]


def move(api, lead_id, **body):
    return api.patch(f"{LEADS}/{lead_id}/stage", body)


def events(lead_id, kind=None) -> list[LeadEvent]:
    qs = LeadEvent.objects.filter(lead_id=lead_id).order_by("occurred_at", "id")
    return list(qs.filter(kind=kind) if kind else qs)


def titles(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [lead["title"] for lead in response.json()["leads"]]


# --- create -----------------------------------------------------------------------------------


def test_create_answers_201_with_every_field_and_the_defaults(make_api, user):
    entity = factories.make_entity(name="Euro Co", owner=user, currency="EUR")
    api = make_api(entity=entity)
    lead = create(api)
    new = factories.stage(entity, "new")
    assert set(lead) == {
        "id",
        "title",
        "companyId",
        "contactId",
        "stageId",
        "stage",
        "status",
        "value",
        "currency",
        "probabilityPct",
        "weightedValue",
        "expectedCloseDate",
        "ownerUserId",
        "source",
        "notes",
        "customFields",
        "lostReason",
        "closedAt",
        "stageChangedAt",
        "createdAt",
        "updatedAt",
    }
    assert lead["stageId"] == str(new.pk)
    assert lead["stage"] == {"id": str(new.pk), "name": "New", "kind": "open", "systemKey": "new"}
    assert lead["status"] == "open"
    assert lead["probabilityPct"] == 10
    assert lead["currency"] == "EUR"
    assert lead["value"] is None and lead["weightedValue"] is None
    assert lead["closedAt"] is None
    assert lead["stageChangedAt"].endswith("Z")
    assert lead["ownerUserId"] is None and lead["companyId"] is None and lead["contactId"] is None
    assert (lead["source"], lead["notes"], lead["lostReason"]) == ("", "", "")


def test_create_records_lead_created(api):
    lead = create(api, value="100")
    [event] = events(lead["id"])
    assert event.kind == LeadEventKind.LEAD_CREATED
    assert event.actor_type == "apiKey"
    assert event.data["stageName"] == "New" and event.data["value"] == "100.00"


def test_create_stores_every_writable_field(api, entity, user):
    company = factories.make_company(entity)
    contact = factories.make_contact(entity, company=company)
    lead = create(
        api,
        title="Renewal",
        companyId=str(company.pk),
        contactId=str(contact.pk),
        value="2500.5",
        currency="gbp",
        probabilityPct=55,
        expectedCloseDate="2030-06-30",
        ownerUserId=str(user.pk),
        source="Referral",
        notes="Call back",
    )
    assert lead["companyId"] == str(company.pk) and lead["contactId"] == str(contact.pk)
    assert lead["value"] == "2500.50"
    assert lead["currency"] == "GBP"
    assert lead["probabilityPct"] == 55
    assert lead["weightedValue"] == "1375.28"  # 2500.50 × 55 / 100 = 1375.275, half up
    assert lead["expectedCloseDate"] == "2030-06-30"
    assert lead["ownerUserId"] == str(user.pk)
    assert (lead["source"], lead["notes"]) == ("Referral", "Call back")


@pytest.mark.parametrize(("value", "stored"), [(1234, "1234.00"), (99.99, "99.99"), ("0", "0.00"), ("7.1", "7.10")])
def test_value_accepts_a_number_or_a_string(api, value, stored):
    assert create(api, value=value)["value"] == stored


@pytest.mark.parametrize("value", [-1, "-0.01", "1.234", "abc", True, [], {}, "NaN", "Infinity", "1e20"])
def test_invalid_value_is_400(api, value):
    body = assert_error(api.post(LEADS, {"title": "X", "value": value}), 400)
    assert "value" in body["details"]


@pytest.mark.parametrize("currency", ["XYZ", "US", "USDX", "", 840])
def test_invalid_currency_is_400(api, currency):
    assert_error(api.post(LEADS, {"title": "X", "currency": currency}), 400)


def test_stage_by_name_case_insensitively(api, entity):
    lead = create(api, stage="qUaLiFiEd")
    assert lead["stageId"] == str(factories.stage(entity, "qualified").pk)
    assert lead["probabilityPct"] == 40


def test_stage_by_system_key_after_a_rename(api, entity):
    won = factories.stage(entity, "won")
    won.name = "Closed – won"
    won.save()
    lead = create(api, stage="won", value="1000")
    assert lead["stageId"] == str(won.pk)
    assert lead["status"] == "won"
    assert lead["probabilityPct"] == 100
    assert lead["closedAt"] is not None
    assert lead["weightedValue"] == "1000.00"


def test_create_in_lost_stage_is_closed_and_keeps_the_lost_reason(api, entity):
    lead = create(api, stageId=str(factories.stage(entity, "lost").pk), lostReason="Budget")
    assert (lead["status"], lead["lostReason"], lead["probabilityPct"]) == ("lost", "Budget", 0)
    assert lead["closedAt"] is not None


def test_create_with_explicit_probability_keeps_it(api):
    assert create(api, stage="won", probabilityPct=90)["probabilityPct"] == 90


def test_create_in_a_custom_stage_uses_its_default_probability(api):
    api.post("/pipeline-stages", {"name": "Pilot", "defaultProbabilityPct": 70})
    assert create(api, stage="pilot")["probabilityPct"] == 70


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"title": ""},
        {"title": "   "},
        {"title": "x" * 201},
        {"title": None},
        {"title": "X", "stage": "Nowhere"},
        {"title": "X", "stage": 5},
        {"title": "X", "stageId": "not-a-uuid"},
        {"title": "X", "stageId": str(uuid.uuid4())},
        {"title": "X", "stageId": None},
        {"title": "X", "probabilityPct": 101},
        {"title": "X", "probabilityPct": -5},
        {"title": "X", "probabilityPct": 50.5},
        {"title": "X", "expectedCloseDate": "2030-02-30"},
        {"title": "X", "expectedCloseDate": "tomorrow"},
        {"title": "X", "companyId": str(uuid.uuid4())},
        {"title": "X", "contactId": "nope"},
        {"title": "X", "ownerUserId": str(uuid.uuid4())},
        {"title": "X", "lostReason": "Not lost at all"},
    ],
)
def test_create_with_invalid_input_is_400(api, body):
    assert_error(api.post(LEADS, body), 400)


def test_create_with_stage_and_stage_id_is_400(api, entity):
    body = assert_error(
        api.post(LEADS, {"title": "X", "stage": "won", "stageId": str(factories.stage(entity, "won").pk)}), 400
    )
    assert "stage" in body["details"]


def test_ids_of_another_entity_in_the_body_are_400_naming_the_field(api, other_entity):
    company = factories.make_company(other_entity)
    contact = factories.make_contact(other_entity)
    stage = factories.stage(other_entity, "new")
    for field, value in (("companyId", company.pk), ("contactId", contact.pk), ("stageId", stage.pk)):
        body = assert_error(api.post(LEADS, {"title": "X", field: str(value)}), 400)
        assert field in body["details"]
    body = assert_error(
        api.post(LEADS, {"title": "X", "ownerUserId": str(other_entity.memberships.first().user_id)}), 400
    )
    assert "ownerUserId" in body["details"]


def test_a_lead_sent_back_as_read_is_accepted_and_its_stage_object_ignored(api, entity):
    lead = create(api, value="10")
    body = {k: v for k, v in lead.items()}
    body["title"] = "Round trip"
    response = api.patch(f"{LEADS}/{lead['id']}", body)
    assert response.status_code == 200, response.content
    assert response.json()["lead"]["title"] == "Round trip"
    assert response.json()["lead"]["stage"] == lead["stage"]
    body = {"stage": {"id": str(factories.stage(entity, "won").pk)}, "notes": "x"}
    assert api.patch(f"{LEADS}/{lead['id']}", body).json()["lead"]["stage"]["name"] == "New"


# --- list and filters -------------------------------------------------------------------------


def test_list_newest_updated_first_and_paginated(api):
    for title in ("A", "B", "C"):
        create(api, title=title)
    first = api.get(LEADS).json()["leads"][-1]
    api.patch(f"{LEADS}/{first['id']}", {"notes": "touched"})
    body = api.get(LEADS, {"pageSize": 2}).json()
    assert [lead["title"] for lead in body["leads"]] == ["A", "C"]
    assert (body["page"], body["pageSize"], body["total"], body["hasMore"]) == (1, 2, 3, True)
    assert titles(api.get(LEADS, {"pageSize": 2, "page": 2})) == ["B"]


def test_filters_by_company_contact_and_stage_id(api, entity):
    company = factories.make_company(entity)
    contact = factories.make_contact(entity)
    create(api, title="With company", companyId=str(company.pk))
    create(api, title="With contact", contactId=str(contact.pk))
    create(api, title="Won", stage="won")
    assert titles(api.get(LEADS, {"companyId": str(company.pk)})) == ["With company"]
    assert titles(api.get(LEADS, {"contactId": str(contact.pk)})) == ["With contact"]
    assert titles(api.get(LEADS, {"stageId": str(factories.stage(entity, "won").pk)})) == ["Won"]


def test_filter_by_an_unknown_or_foreign_id_is_an_empty_list(api, other_entity):
    create(api)
    foreign = factories.make_company(other_entity)
    for params in ({"companyId": str(uuid.uuid4())}, {"companyId": str(foreign.pk)}, {"stageId": str(uuid.uuid4())}):
        assert titles(api.get(LEADS, params)) == []


@pytest.mark.parametrize("param", ["companyId", "contactId", "stageId", "ownerUserId"])
def test_filter_with_a_malformed_uuid_is_400(api, param):
    assert_error(api.get(LEADS, {param: "nope"}), 400)


def test_filter_by_stage_name_or_system_key(api, entity):
    create(api, title="Q", stage="qualified")
    create(api, title="W", stage="won")
    won = factories.stage(entity, "won")
    won.name = "Signed"
    won.save()
    assert titles(api.get(LEADS, {"stage": "QUALIFIED"})) == ["Q"]
    assert titles(api.get(LEADS, {"stage": "won"})) == ["W"]
    assert titles(api.get(LEADS, {"stage": "signed"})) == ["W"]
    assert titles(api.get(LEADS, {"stage": "nowhere"})) == []


def test_filter_by_status(api):
    create(api, title="Open")
    create(api, title="Won", stage="won")
    create(api, title="Lost", stage="lost")
    assert titles(api.get(LEADS, {"status": "open"})) == ["Open"]
    assert titles(api.get(LEADS, {"status": "won"})) == ["Won"]
    assert titles(api.get(LEADS, {"status": "lost"})) == ["Lost"]
    assert_error(api.get(LEADS, {"status": "closed"}), 400)


def test_filter_by_owner(api, entity, user):
    other = factories.make_member(entity)
    create(api, title="Mine", ownerUserId=str(user.pk))
    create(api, title="Theirs", ownerUserId=str(other.pk))
    create(api, title="Nobody's")
    assert titles(api.get(LEADS, {"ownerUserId": "me"})) == ["Mine"]
    assert titles(api.get(LEADS, {"ownerUserId": str(other.pk)})) == ["Theirs"]
    assert titles(api.get(LEADS, {"ownerUserId": "unassigned"})) == ["Nobody's"]


def test_q_is_a_case_insensitive_substring_with_literal_wildcards(api):
    create(api, title="100% uptime deal")
    create(api, title="Plain deal")
    create(api, title="under_score")
    assert titles(api.get(LEADS, {"q": "UPTIME"})) == ["100% uptime deal"]
    assert titles(api.get(LEADS, {"q": "%"})) == ["100% uptime deal"]
    assert titles(api.get(LEADS, {"q": "_"})) == ["under_score"]


# --- retrieve ---------------------------------------------------------------------------------


def test_get_answers_the_wrapped_lead(api):
    lead = create(api)
    assert api.get(f"{LEADS}/{lead['id']}").json() == {"lead": lead}


# --- patch ------------------------------------------------------------------------------------


def test_patch_changes_only_the_fields_sent(api, user):
    lead = create(api, value="10", source="Web")
    body = api.patch(f"{LEADS}/{lead['id']}", {"notes": "n"}).json()["lead"]
    assert (body["notes"], body["source"], body["value"], body["title"]) == ("n", "Web", "10.00", "Big deal")
    assert not events(lead["id"], LeadEventKind.FIELD_CHANGED)


def test_patch_records_one_field_changed_event_with_old_and_new_values(api, user):
    lead = create(api, title="Old", value="10")
    response = api.patch(
        f"{LEADS}/{lead['id']}",
        {
            "title": "New title",
            "value": 2500,
            "ownerUserId": str(user.pk),
            "expectedCloseDate": "2031-01-02",
            "notes": "x",
        },
    )
    assert response.status_code == 200, response.content
    [event] = events(lead["id"], LeadEventKind.FIELD_CHANGED)
    assert event.data == {
        "changes": {
            "title": ["Old", "New title"],
            "value": ["10.00", "2500.00"],
            "ownerUserId": [None, str(user.pk)],
            "expectedCloseDate": [None, "2031-01-02"],
        }
    }
    assert event.actor_type == "apiKey"
    api.patch(f"{LEADS}/{lead['id']}", {"value": None, "ownerUserId": None})
    last = events(lead["id"], LeadEventKind.FIELD_CHANGED)[-1]
    assert last.data == {"changes": {"value": ["2500.00", None], "ownerUserId": [str(user.pk), None]}}


def test_patch_with_the_same_values_records_nothing(api):
    lead = create(api, title="Same", value="5")
    api.patch(f"{LEADS}/{lead['id']}", {"title": "Same", "value": "5.00"})
    assert not events(lead["id"], LeadEventKind.FIELD_CHANGED)


def test_patch_without_a_body_changes_nothing(api):
    """Every field of a lead's PATCH is optional, so the schema does not require a body: none is
    `{}`, a no-op that answers the lead."""
    lead = create(api, title="Untouched", value="5")
    response = api.patch(f"{LEADS}/{lead['id']}")
    assert response.status_code == 200, response.content
    assert response.json()["lead"] == lead
    assert not events(lead["id"], LeadEventKind.FIELD_CHANGED)


def test_patch_stage_goes_through_the_stage_move(api, entity):
    lead = create(api)
    body = api.patch(f"{LEADS}/{lead['id']}", {"stage": "won", "title": "Signed"}).json()["lead"]
    assert (body["status"], body["probabilityPct"], body["title"]) == ("won", 100, "Signed")
    assert body["closedAt"] is not None
    [event] = events(lead["id"], LeadEventKind.STAGE_CHANGED)
    assert event.data["toStageName"] == "Won"
    assert events(lead["id"], LeadEventKind.FIELD_CHANGED)[0].data == {"changes": {"title": ["Big deal", "Signed"]}}


def test_patch_stage_id_with_probability_and_lost_reason(api, entity):
    lead = create(api)
    lost = factories.stage(entity, "lost")
    body = api.patch(
        f"{LEADS}/{lead['id']}", {"stageId": str(lost.pk), "probabilityPct": 5, "lostReason": "Price"}
    ).json()
    assert (body["lead"]["status"], body["lead"]["probabilityPct"], body["lead"]["lostReason"]) == ("lost", 5, "Price")


def test_patch_probability_without_a_stage_change_just_sets_it(api):
    lead = create(api)
    body = api.patch(f"{LEADS}/{lead['id']}", {"stage": "new", "probabilityPct": 33}).json()["lead"]
    assert body["probabilityPct"] == 33
    assert not events(lead["id"], LeadEventKind.STAGE_CHANGED)


def test_patch_lost_reason_on_an_open_lead_is_400(api):
    lead = create(api)
    assert_error(api.patch(f"{LEADS}/{lead['id']}", {"lostReason": "Nope"}), 400)
    assert api.patch(f"{LEADS}/{lead['id']}", {"lostReason": ""}).status_code == 200


@pytest.mark.parametrize(
    "body",
    [{"title": ""}, {"value": "-3"}, {"currency": "ABC"}, {"stage": "nowhere"}, {"stageId": "x"}],
)
def test_patch_with_invalid_input_is_400(api, body):
    lead = create(api)
    assert_error(api.patch(f"{LEADS}/{lead['id']}", body), 400)


# --- PATCH /leads/{id}/stage --------------------------------------------------------------------


def test_move_by_stage_id_answers_the_lead_and_sets_the_rules(api, entity):
    lead = create(api, value="1000")
    proposal = factories.stage(entity, "proposal")
    response = move(api, lead["id"], stageId=str(proposal.pk))
    assert response.status_code == 200, response.content
    moved = response.json()["lead"]
    assert moved["stage"] == {"id": str(proposal.pk), "name": "Proposal", "kind": "open", "systemKey": "proposal"}
    assert (moved["probabilityPct"], moved["weightedValue"], moved["closedAt"]) == (60, "600.00", None)
    assert moved["stageChangedAt"] > lead["stageChangedAt"]


def test_move_by_stage_name_or_system_key(api):
    lead = create(api)
    assert move(api, lead["id"], stage="CONTACTED").json()["lead"]["stage"]["systemKey"] == "contacted"
    assert move(api, lead["id"], stage="won").json()["lead"]["status"] == "won"


def test_move_to_won_then_lost_then_open(api):
    lead = create(api)
    won = move(api, lead["id"], stage="won").json()["lead"]
    assert won["closedAt"] is not None and won["probabilityPct"] == 100
    lost = move(api, lead["id"], stage="lost", lostReason="Went dark").json()["lead"]
    assert (lost["status"], lost["lostReason"], lost["probabilityPct"]) == ("lost", "Went dark", 0)
    assert lost["closedAt"] >= won["closedAt"]
    reopened = move(api, lead["id"], stage="qualified", probabilityPct=25).json()["lead"]
    assert (reopened["closedAt"], reopened["lostReason"], reopened["probabilityPct"]) == (None, "", 25)


def test_move_to_the_current_stage_changes_nothing(api):
    lead = create(api)
    response = move(api, lead["id"], stage="new", probabilityPct=99)
    assert response.status_code == 200
    assert response.json()["lead"] == lead
    assert not events(lead["id"], LeadEventKind.STAGE_CHANGED)


def test_move_records_stage_changed_with_the_actor(api, entity):
    lead = create(api)
    move(api, lead["id"], stage="won")
    [event] = events(lead["id"], LeadEventKind.STAGE_CHANGED)
    new, won = factories.stage(entity, "new"), factories.stage(entity, "won")
    assert event.data == {
        "fromStageId": str(new.pk),
        "fromStageName": "New",
        "toStageId": str(won.pk),
        "toStageName": "Won",
    }
    assert (event.actor_type, event.actor_id, event.actor_name) == ("apiKey", api.api_key.pk, api.api_key.name)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"probabilityPct": 10},
        {"stage": "won", "stageId": "00000000-0000-0000-0000-000000000000"},
        {"stage": "nowhere"},
        {"stage": ""},
        {"stageId": "nope"},
        {"stageId": None},
        {"stageId": str(uuid.uuid4())},
        {"stage": "won", "probabilityPct": 150},
        {"stage": "won", "lostReason": "Contradiction"},
        {"stage": "qualified", "lostReason": "Contradiction"},
    ],
)
def test_move_with_invalid_body_is_400(api, body):
    lead = create(api)
    assert_error(move(api, lead["id"], **body), 400)
    assert Lead.objects.get(pk=lead["id"]).stage.name == "New"


def test_move_to_another_entitys_stage_is_400(api, other_entity):
    lead = create(api)
    body = assert_error(move(api, lead["id"], stageId=str(factories.stage(other_entity, "won").pk)), 400)
    assert "stageId" in body["details"]


def test_move_with_a_session_and_x_entity_id(client, entity, user):
    lead = factories.make_lead(entity, title="Board card")
    client.force_login(user)
    response = client.patch(
        f"/api/crm/leads/{lead.pk}/stage",
        {"stageId": str(factories.stage(entity, "contacted").pk)},
        content_type="application/json",
        headers={"x-entity-id": str(entity.pk)},
    )
    assert response.status_code == 200, response.content
    [event] = events(lead.pk, LeadEventKind.STAGE_CHANGED)
    assert (event.actor_type, event.actor_id, event.actor_name) == ("user", user.pk, "Alice Owner")


# --- delete -----------------------------------------------------------------------------------


def test_delete_answers_ok_and_keeps_activities_with_a_null_lead(api, entity):
    lead = create(api)
    activity = api.post(f"{LEADS}/{lead['id']}/activities", {"type": "call", "subject": "Intro"}).json()["activity"]
    response = api.delete(f"{LEADS}/{lead['id']}")
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert_error(api.get(f"{LEADS}/{lead['id']}"), 404)
    assert Activity.objects.get(pk=activity["id"]).lead_id is None
    assert api.get(f"/activities/{activity['id']}").json()["activity"]["leadId"] is None
    assert not LeadEvent.objects.filter(lead_id=lead["id"]).exists()


# --- admin ------------------------------------------------------------------------------------


def _admin_save(lead: Lead, changes: dict, staff) -> Lead:
    request = RequestFactory().post("/admin/")
    request.user = staff
    model_admin = LeadAdmin(Lead, admin.site)
    form_class = model_admin.get_form(request, obj=lead, change=True)
    initial = {
        "entity": lead.entity_id,
        "title": lead.title,
        "company": lead.company_id or "",
        "contact": lead.contact_id or "",
        "stage": lead.stage_id,
        "value": lead.value if lead.value is not None else "",
        "currency": lead.currency,
        "probability_pct": lead.probability_pct,
        "expected_close_date": "",
        "owner": lead.owner_id or "",
        "source": lead.source,
        "notes": lead.notes,
        "lost_reason": lead.lost_reason,
    }
    form = form_class(data={**initial, **changes}, instance=lead)
    assert form.is_valid(), form.errors
    obj = form.save(commit=False)
    model_admin.save_model(request, obj, form, change=True)
    return Lead.objects.get(pk=lead.pk)


def test_admin_stage_change_goes_through_the_stage_move(api, entity, staff_user):
    lead = Lead.objects.get(pk=create(api, value="100")["id"])
    won = factories.stage(entity, "won")
    saved = _admin_save(lead, {"stage": won.pk, "notes": "signed on paper"}, staff_user)
    assert saved.stage_id == won.pk and saved.closed_at is not None and saved.probability_pct == 100
    assert saved.notes == "signed on paper"
    [event] = events(lead.pk, LeadEventKind.STAGE_CHANGED)
    assert (event.actor_type, event.actor_id, event.actor_name) == ("user", staff_user.pk, "Staff Person")
    assert event.data["toStageName"] == "Won"


def test_admin_refuses_a_stage_of_another_entity(api, other_entity, staff_user):
    lead = Lead.objects.get(pk=create(api)["id"])
    request = RequestFactory().post("/admin/")
    request.user = staff_user
    model_admin = LeadAdmin(Lead, admin.site)
    form_class = model_admin.get_form(request, obj=lead, change=True)
    data = {
        "entity": lead.entity_id,
        "title": lead.title,
        "stage": factories.stage(other_entity, "won").pk,
        "currency": "USD",
        "probability_pct": 10,
    }
    assert not form_class(data=data, instance=lead).is_valid()


def test_stage_changed_at_moves_forward(api):
    lead = create(api)
    before = timezone.now() - timedelta(seconds=1)
    moved = move(api, lead["id"], stage="contacted").json()["lead"]
    assert moved["stageChangedAt"] >= before.strftime("%Y-%m-%dT%H:%M:%S")
