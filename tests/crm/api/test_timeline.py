"""`GET /api/crm/leads/{id}/timeline`: content, order, actors, paging, query count."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from crm.models import LeadEvent
from tests import factories


def timeline(api, lead_id, **params) -> dict:
    response = api.get(f"/leads/{lead_id}/timeline", params)
    assert response.status_code == 200, response.content
    return response.json()


def test_timeline_after_a_sequence_of_moves_is_newest_first_with_stage_names(api, entity, user):
    lead = api.post("/leads", {"title": "Acme rollout", "value": "500"}).json()["lead"]
    stages = {key: factories.stage(entity, key) for key in ("new", "contacted", "qualified", "won", "lost")}
    api.patch(f"/leads/{lead['id']}/stage", {"stage": "contacted"})
    api.patch(f"/leads/{lead['id']}/stage", {"stageId": str(stages["qualified"].pk)})
    api.patch(f"/leads/{lead['id']}", {"value": "750", "title": "Acme rollout II"})
    api.patch(f"/leads/{lead['id']}/stage", {"stage": "won"})
    api.patch(f"/leads/{lead['id']}/stage", {"stage": "won"})  # no-op: no event
    api.patch(f"/leads/{lead['id']}", {"stage": "lost", "lostReason": "Budget cut"})
    api.post(f"/leads/{lead['id']}/activities", {"type": "call", "subject": "Debrief"})

    body = timeline(api, lead["id"])
    events = body["timeline"]
    assert (body["page"], body["pageSize"], body["total"], body["hasMore"]) == (1, 50, 7, False)
    assert [e["kind"] for e in events] == [
        "activity_logged",
        "stage_changed",
        "stage_changed",
        "field_changed",
        "stage_changed",
        "stage_changed",
        "lead_created",
    ]
    moves = [(e["data"]["fromStageName"], e["data"]["toStageName"]) for e in events if e["kind"] == "stage_changed"]
    assert moves == [("Won", "Lost"), ("Qualified", "Won"), ("Contacted", "Qualified"), ("New", "Contacted")]
    won_to_lost = events[1]["data"]
    assert won_to_lost == {
        "fromStageId": str(stages["won"].pk),
        "fromStageName": "Won",
        "toStageId": str(stages["lost"].pk),
        "toStageName": "Lost",
    }
    assert events[3]["data"] == {
        "changes": {"title": ["Acme rollout", "Acme rollout II"], "value": ["500.00", "750.00"]}
    }
    assert events[0]["data"]["subject"] == "Debrief" and events[0]["data"]["type"] == "call"
    times = [e["occurredAt"] for e in events]
    assert times == sorted(times, reverse=True)
    for event in events:
        assert set(event) == {"id", "kind", "occurredAt", "actor", "summary", "data"}
        assert event["occurredAt"].endswith("Z")
        assert event["actor"] == {"type": "apiKey", "id": str(api.api_key.pk), "name": api.api_key.name}
        assert event["summary"]
    assert events[1]["summary"] == "Stage changed from Won to Lost"


def test_session_actor_is_the_user(client, entity, user):
    lead = factories.make_lead(entity, title="Card")
    client.force_login(user)
    headers = {"x-entity-id": str(entity.pk)}
    client.patch(f"/api/crm/leads/{lead.pk}/stage", {"stage": "won"}, content_type="application/json", headers=headers)
    response = client.get(f"/api/crm/leads/{lead.pk}/timeline", headers=headers)
    assert response.status_code == 200, response.content
    [event] = response.json()["timeline"]
    assert event["actor"] == {"type": "user", "id": str(user.pk), "name": "Alice Owner"}


def test_system_actor_has_no_id(api, entity):
    lead = factories.make_lead(entity, title="Imported")
    LeadEvent.objects.create(
        entity=entity, lead=lead, kind="lead_created", occurred_at=timezone.now(), summary="Imported"
    )
    [event] = timeline(api, lead.pk)["timeline"]
    assert event["actor"] == {"type": "system", "id": None, "name": "System"}


def test_timeline_pages_and_breaks_ties_by_id(api, entity):
    lead = factories.make_lead(entity, title="Busy")
    at = timezone.now() - timedelta(days=1)
    created = LeadEvent.objects.bulk_create(
        LeadEvent(entity=entity, lead=lead, kind="field_changed", occurred_at=at, summary=f"e{i}") for i in range(5)
    )
    expected = [str(e.pk) for e in sorted(created, key=lambda e: str(e.pk), reverse=True)]
    first = timeline(api, lead.pk, pageSize=2)
    second = timeline(api, lead.pk, pageSize=2, page=2)
    third = timeline(api, lead.pk, pageSize=2, page=3)
    assert (first["total"], first["hasMore"], third["hasMore"]) == (5, True, False)
    assert [e["id"] for e in first["timeline"] + second["timeline"] + third["timeline"]] == expected


def test_timeline_shows_only_that_leads_events(api):
    one = api.post("/leads", {"title": "One"}).json()["lead"]
    two = api.post("/leads", {"title": "Two"}).json()["lead"]
    api.patch(f"/leads/{two['id']}/stage", {"stage": "won"})
    assert [e["kind"] for e in timeline(api, one["id"])["timeline"]] == ["lead_created"]
