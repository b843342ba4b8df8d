"""A lead's timeline, newest first: the one query behind the API route and the lead page."""

from __future__ import annotations

from django.db.models import QuerySet

from crm.models import Lead, LeadEvent

TIMELINE_ORDER = ("-occurred_at", "-id")


def lead_timeline(*, lead: Lead) -> QuerySet[LeadEvent]:
    """The lead's events, newest first (ties broken by id, so pages never overlap)."""
    return LeadEvent.objects.for_entity(lead.entity_id).filter(lead=lead).order_by(*TIMELINE_ORDER)
