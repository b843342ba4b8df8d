"""The staff admin for stages, leads and activities goes through the same services as the API."""

from __future__ import annotations

import pytest
from django.utils import timezone

from crm.models import Activity, Lead, LeadEvent, PipelineStage
from tests import factories


@pytest.fixture
def lead(entity):
    return factories.make_lead(entity, title="Admin deal")


def lead_form(lead: Lead, **changes) -> dict:
    data = {
        "entity": lead.entity_id,
        "title": lead.title,
        "company": "",
        "contact": "",
        "stage": lead.stage_id,
        "value": "",
        "currency": lead.currency,
        "probability_pct": lead.probability_pct,
        "expected_close_date": "",
        "owner": "",
        "source": "",
        "notes": "",
        "lost_reason": "",
        # the read-only timeline inline
        "events-TOTAL_FORMS": "0",
        "events-INITIAL_FORMS": "0",
        "events-MIN_NUM_FORMS": "0",
        "events-MAX_NUM_FORMS": "1000",
    }
    data.update(changes)
    return data


@pytest.mark.parametrize("model", ["pipelinestage", "lead", "activity"])
def test_admin_pages_render(staff_client, lead, model):
    Activity.objects.create(
        entity=lead.entity, type="task", subject="Call", status="open", occurred_at=timezone.now(), lead=lead
    )
    assert staff_client.get(f"/admin/crm/{model}/").status_code == 200
    assert staff_client.get(f"/admin/crm/{model}/add/").status_code == 200
    obj = {"pipelinestage": lead.stage, "lead": lead, "activity": Activity.objects.first()}[model]
    assert staff_client.get(f"/admin/crm/{model}/{obj.pk}/change/").status_code == 200


def test_admin_stage_move_records_the_timeline_event(staff_client, staff_user, lead, entity):
    won = factories.stage(entity, "won")
    response = staff_client.post(f"/admin/crm/lead/{lead.pk}/change/", lead_form(lead, stage=won.pk))
    assert response.status_code == 302, response.content.decode()[:2000]
    lead.refresh_from_db()
    assert (lead.stage_id, lead.probability_pct) == (won.pk, 100)
    assert lead.closed_at is not None
    [event] = LeadEvent.objects.filter(lead=lead, kind="stage_changed")
    assert (event.actor_type, event.actor_id) == ("user", staff_user.pk)


def test_admin_add_lead_records_lead_created(staff_client, entity):
    stage = factories.stage(entity, "lost")
    data = lead_form(
        Lead(entity=entity, title="Added", stage=stage, currency="USD", probability_pct=0), lost_reason="Price"
    )
    response = staff_client.post("/admin/crm/lead/add/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    lead = Lead.objects.get(title="Added")
    assert lead.closed_at is not None and lead.stage_changed_at is not None
    assert LeadEvent.objects.filter(lead=lead, kind="lead_created").count() == 1


def test_admin_refuses_a_lost_reason_on_an_open_lead(staff_client, lead):
    response = staff_client.post(f"/admin/crm/lead/{lead.pk}/change/", lead_form(lead, lost_reason="Nope"))
    assert response.status_code == 200  # the form again, with the error
    lead.refresh_from_db()
    assert lead.lost_reason == ""


def test_admin_add_stage_goes_last(staff_client, entity):
    data = {"entity": entity.pk, "name": "Pilot", "kind": "won", "default_probability_pct": "", "color_key": "teal"}
    response = staff_client.post("/admin/crm/pipelinestage/add/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    stage = PipelineStage.objects.get(entity=entity, name="Pilot")
    assert (stage.sort_order, stage.default_probability_pct) == (7, 100)


def test_admin_refuses_duplicate_names_and_system_kind_changes(staff_client, entity):
    new = factories.stage(entity, "new")
    data = {"name": "won", "kind": "open", "default_probability_pct": 10, "color_key": "slate"}
    assert staff_client.post(f"/admin/crm/pipelinestage/{new.pk}/change/", data).status_code == 200
    data = {"name": "New", "kind": "won", "default_probability_pct": 10, "color_key": "slate"}
    assert staff_client.post(f"/admin/crm/pipelinestage/{new.pk}/change/", data).status_code == 200
    new.refresh_from_db()
    assert (new.name, new.kind) == ("New", "open")
    data = {"name": "Fresh", "kind": "open", "default_probability_pct": 15, "color_key": "rose"}
    assert staff_client.post(f"/admin/crm/pipelinestage/{new.pk}/change/", data).status_code == 302
    new.refresh_from_db()
    assert (new.name, new.default_probability_pct, new.color_key) == ("Fresh", 15, "rose")


def test_admin_cannot_delete_stages(staff_client, entity):
    stage = factories.stage(entity, "contacted")
    assert staff_client.get(f"/admin/crm/pipelinestage/{stage.pk}/delete/").status_code == 403
    response = staff_client.post(f"/admin/crm/pipelinestage/{stage.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert PipelineStage.objects.filter(pk=stage.pk).exists()
    # Nor through the changelist's bulk action.
    staff_client.post(
        "/admin/crm/pipelinestage/", {"action": "delete_selected", "_selected_action": [str(stage.pk)], "post": "yes"}
    )
    assert PipelineStage.objects.filter(pk=stage.pk).exists()


def test_admin_activity_add_and_complete(staff_client, staff_user, entity, lead):
    data = {
        "entity": entity.pk,
        "type": "task",
        "subject": "Send contract",
        "body": "",
        "status": "",
        "occurred_at_0": "",
        "occurred_at_1": "",
        "lead": lead.pk,
        "outcome": "",
    }
    response = staff_client.post("/admin/crm/activity/add/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    activity = Activity.objects.get(subject="Send contract")
    assert (activity.status, activity.completed_at, activity.created_by_id) == ("open", None, staff_user.pk)
    assert LeadEvent.objects.filter(lead=lead, kind="activity_logged").count() == 1
    local = timezone.localtime(activity.occurred_at)
    data.update(
        status="completed",
        occurred_at_0=local.strftime("%Y-%m-%d"),
        occurred_at_1=local.strftime("%H:%M:%S"),
    )
    data.pop("entity")
    response = staff_client.post(f"/admin/crm/activity/{activity.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    activity.refresh_from_db()
    assert activity.status == "completed" and activity.completed_at is not None


# --- Lead and activity forms refuse rows of another entity and owners who are not members ----------

FOREIGN = "This belongs to another entity."
NOT_MEMBER = "This user is not a member of the entity."


@pytest.fixture
def foreign_rows(other_entity):
    company = factories.make_company(other_entity, name="Their company")
    contact = factories.make_contact(other_entity, email="theirs@example.com", company=company)
    lead = factories.make_lead(other_entity, title="Their deal")
    return {"company": company, "contact": contact, "lead": lead}


@pytest.mark.parametrize("field", ["company", "contact"])
def test_admin_lead_add_refuses_a_company_or_contact_of_another_entity(staff_client, entity, foreign_rows, field):
    data = lead_form(
        Lead(entity=entity, title="Cross", stage=factories.stage(entity, "new"), currency="USD", probability_pct=10),
        **{field: foreign_rows[field].pk},
    )
    response = staff_client.post("/admin/crm/lead/add/", data)
    assert response.status_code == 200  # the form again, with the error
    assert response.context["adminform"].form.errors[field] == [FOREIGN]
    assert not Lead.objects.filter(title="Cross").exists()


def test_admin_lead_change_refuses_a_foreign_stage_and_a_non_member_owner(staff_client, lead, other_entity, other_user):
    foreign_stage = factories.stage(other_entity, "won")
    response = staff_client.post(
        f"/admin/crm/lead/{lead.pk}/change/", lead_form(lead, stage=foreign_stage.pk, owner=other_user.pk)
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["stage"] == [FOREIGN]
    assert errors["owner"] == [NOT_MEMBER]
    lead.refresh_from_db()
    assert (lead.stage.system_key, lead.owner_id) == ("new", None)
    assert not LeadEvent.objects.filter(lead=lead).exists()


def test_admin_lead_accepts_rows_and_a_member_of_its_own_entity(staff_client, lead, entity):
    company = factories.make_company(entity, name="Ours")
    member = factories.make_member(entity)
    response = staff_client.post(
        f"/admin/crm/lead/{lead.pk}/change/", lead_form(lead, company=company.pk, owner=member.pk)
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    lead.refresh_from_db()
    assert (lead.company_id, lead.owner_id) == (company.pk, member.pk)


def activity_form(entity, **changes) -> dict:
    data = {
        "entity": entity.pk,
        "type": "task",
        "subject": "Cross-entity",
        "body": "",
        "status": "",
        "occurred_at_0": "",
        "occurred_at_1": "",
        "outcome": "",
    }
    data.update(changes)
    return data


@pytest.mark.parametrize("field", ["lead", "company", "contact"])
def test_admin_activity_add_refuses_rows_of_another_entity(staff_client, entity, foreign_rows, field):
    response = staff_client.post("/admin/crm/activity/add/", activity_form(entity, **{field: foreign_rows[field].pk}))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors[field] == [FOREIGN]
    assert not Activity.objects.exists()
    assert not LeadEvent.objects.filter(lead=foreign_rows["lead"]).exists()


def test_admin_activity_add_refuses_an_assignee_who_is_not_a_member(staff_client, entity, other_user):
    response = staff_client.post("/admin/crm/activity/add/", activity_form(entity, assignee=other_user.pk))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["assignee"] == [NOT_MEMBER]
    assert not Activity.objects.exists()


def test_admin_activity_change_refuses_moving_it_to_a_foreign_lead(staff_client, entity, lead, foreign_rows):
    data = activity_form(entity, lead=lead.pk, subject="Mine")
    assert staff_client.post("/admin/crm/activity/add/", data).status_code == 302
    activity = Activity.objects.get(subject="Mine")
    data.pop("entity")  # read-only once saved: the form checks against the saved row's entity
    data["lead"] = foreign_rows["lead"].pk
    local = timezone.localtime(activity.occurred_at)
    data.update(occurred_at_0=local.strftime("%Y-%m-%d"), occurred_at_1=local.strftime("%H:%M:%S"))
    response = staff_client.post(f"/admin/crm/activity/{activity.pk}/change/", data)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["lead"] == [FOREIGN]
    activity.refresh_from_db()
    assert activity.lead_id == lead.pk
