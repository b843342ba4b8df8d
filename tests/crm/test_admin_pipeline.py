"""The staff admin for stages, leads and activities goes through the same services as the API."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from crm.models import Activity, Lead, LeadEvent, PipelineStage
from tests import factories


@pytest.fixture
def staff_client(db):
    staff = factories.make_user(name="Staff Person")
    staff.is_staff = staff.is_superuser = True
    staff.save()
    client = Client()
    client.force_login(staff)
    client.staff = staff
    return client


@pytest.fixture
def lead(entity):
    return Lead.objects.create(
        entity=entity, title="Admin deal", stage=factories.stage(entity, "new"), currency="USD", probability_pct=10
    )


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


def test_admin_stage_move_records_the_timeline_event(staff_client, lead, entity):
    won = factories.stage(entity, "won")
    response = staff_client.post(f"/admin/crm/lead/{lead.pk}/change/", lead_form(lead, stage=won.pk))
    assert response.status_code == 302, response.content.decode()[:2000]
    lead.refresh_from_db()
    assert (lead.stage_id, lead.probability_pct) == (won.pk, 100)
    assert lead.closed_at is not None
    [event] = LeadEvent.objects.filter(lead=lead, kind="stage_changed")
    assert (event.actor_type, event.actor_id) == ("user", staff_client.staff.pk)


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
    staff_client.post(f"/admin/crm/pipelinestage/{stage.pk}/delete/", {"post": "yes"})
    assert PipelineStage.objects.filter(pk=stage.pk).exists()


def test_admin_activity_add_and_complete(staff_client, entity, lead):
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
    assert (activity.status, activity.completed_at, activity.created_by_id) == ("open", None, staff_client.staff.pk)
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
