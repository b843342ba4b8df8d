"""Deleting a stage moves its leads in bounded chunks: every lead moves, each gets one event."""

from __future__ import annotations

from crm.models import Lead, LeadEvent, PipelineStage
from crm.services import pipeline
from tests import factories


def test_stage_delete_moves_every_lead_across_several_chunks(api, entity, monkeypatch):
    monkeypatch.setattr(pipeline, "MOVE_CHUNK", 2)
    doomed = PipelineStage.objects.create(
        entity=entity, name="Doomed", kind="open", sort_order=7, default_probability_pct=30
    )
    target = factories.stage(entity, "qualified")
    for n in range(5):
        Lead.objects.create(
            entity=entity, title=f"L{n}", stage=doomed, currency="USD", probability_pct=30, lost_reason=""
        )

    response = api.delete(f"/pipeline-stages/{doomed.pk}", {"moveLeadsToStageId": str(target.pk)})

    assert response.status_code == 200, response.content
    assert response.json() == {"ok": True, "movedLeadCount": 5}
    assert set(Lead.objects.for_entity(entity).values_list("stage_id", "probability_pct")) == {(target.pk, 40)}
    events = LeadEvent.objects.for_entity(entity).filter(kind="stage_changed")
    assert events.count() == 5
    assert events.values("lead_id").distinct().count() == 5
