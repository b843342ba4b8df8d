"""Activity writes: status defaults, the completion timestamp, and the lead's timeline.

Tasks and logged activities share one table; what differs is their starting status (a task is a
to-do, so it starts `open`; a call or note is logged after the fact, so it starts `completed`).
`completedAt` is derived from the status here, never taken from the client, so it always says
when the activity was completed.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from axiomatic import changes
from axiomatic.models import Entity, User
from axiomatic.representations import represent
from crm.choices import ActivityStatus, ActivityType, LeadEventKind
from crm.models import Activity, Lead
from crm.services.actors import Actor
from crm.services.timeline import timeline_record

UNSET: Any = object()


def activity_default_status(*, type: str) -> str:
    """Tasks start open; everything else is logged once it happened, so it starts completed."""
    return ActivityStatus.OPEN if type == ActivityType.TASK else ActivityStatus.COMPLETED


def _sync_completed_at(activity: Activity, *, previous_status: str | None) -> None:
    if activity.status == ActivityStatus.COMPLETED:
        if previous_status != ActivityStatus.COMPLETED or activity.completed_at is None:
            activity.completed_at = timezone.now()
    else:
        activity.completed_at = None


@transaction.atomic
def activity_save_new(*, activity: Activity, actor: Actor) -> Activity:
    """Insert an unsaved activity with its defaults (used by the API and the admin).

    The status defaults by type, `occurredAt` to now, `completedAt` follows the status, and an
    activity about a lead records `activity_logged` on the lead's timeline.
    """
    if not activity.status:
        activity.status = activity_default_status(type=activity.type)
    if activity.occurred_at is None:
        activity.occurred_at = timezone.now()
    _sync_completed_at(activity, previous_status=None)
    activity.save()
    if activity.lead_id is not None:
        timeline_record(
            lead=activity.lead,
            kind=LeadEventKind.ACTIVITY_LOGGED,
            actor=actor,
            summary=f"{activity.get_type_display()} logged: {activity.subject}",
            data=represent(activity),
        )
    changes.record_created(activity, actor=actor)
    return activity


def activity_create(
    *,
    entity: Entity,
    actor: Actor,
    created_by: User | None,
    lead: Lead | None = None,
    company=UNSET,
    contact=UNSET,
    **fields: Any,
) -> Activity:
    """Create an activity; one attached to a lead records `activity_logged` on its timeline.

    An activity about a lead takes the lead's company and contact unless the caller names them
    (an explicit null included), so it also shows up on the company's and contact's history.
    """
    if lead is not None:
        company = lead.company if company is UNSET else company
        contact = lead.contact if contact is UNSET else contact
    activity = Activity(
        entity=entity,
        lead=lead,
        company=None if company is UNSET else company,
        contact=None if contact is UNSET else contact,
        created_by=created_by,
        **fields,
    )
    return activity_save_new(activity=activity, actor=actor)


@transaction.atomic
def activity_update(*, activity: Activity, **fields: Any) -> Activity:
    """Apply a partial update; completing sets `completedAt`, reopening or cancelling clears it."""
    before = changes.snapshot_fresh(activity, lock=True)
    previous_status = activity.status
    for name, value in fields.items():
        setattr(activity, name, value)
    _sync_completed_at(activity, previous_status=previous_status)
    activity.save()
    changes.record_updated(activity, before)
    return activity


def activity_delete(*, activity: Activity) -> None:
    """Delete an activity; the timeline keeps the `activity_logged` event as history."""
    changes.delete_recorded(activity)
