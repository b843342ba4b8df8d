"""Appending to a lead's timeline.

Every event of every kind is written through `timeline_record`, so the shape of `data`, the actor
snapshot and the summaries stay uniform whichever service records them.
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from crm.models import Lead, LeadEvent
from crm.services.actors import Actor


def timeline_event(
    *,
    lead: Lead,
    kind: str,
    actor: Actor,
    summary: str,
    data: dict | None = None,
    occurred_at: datetime | None = None,
) -> LeadEvent:
    """One event of `lead`'s timeline, not yet saved (the bulk writes insert many at once)."""
    return LeadEvent(
        entity_id=lead.entity_id,
        lead=lead,
        kind=kind,
        occurred_at=occurred_at or timezone.now(),
        actor_type=actor.type,
        actor_id=actor.id,
        actor_name=actor.name[:200],
        summary=summary[:500],
        data=data or {},
    )


def timeline_record(
    *,
    lead: Lead,
    kind: str,
    actor: Actor,
    summary: str,
    data: dict | None = None,
    occurred_at: datetime | None = None,
) -> LeadEvent:
    """Append one event to `lead`'s timeline."""
    event = timeline_event(lead=lead, kind=kind, actor=actor, summary=summary, data=data, occurred_at=occurred_at)
    event.save(force_insert=True)
    return event
