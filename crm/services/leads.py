"""Lead writes: creation, updates with their timeline, and the one stage-move service.

Every change of a lead's stage, from the API (`PATCH /leads/{id}` and `PATCH /leads/{id}/stage`),
the board, the admin or a stage deletion, follows the rules of `lead_move_stage`, so `status`,
`probabilityPct`, `closedAt`, `lostReason`, `stageChangedAt` and the timeline always agree.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from axiomatic import changes as feed
from axiomatic import errors
from axiomatic.db import is_postgres
from axiomatic.models import Entity
from axiomatic.timestamps import iso_utc
from crm.choices import LeadEventKind, StageKind
from crm.models import Lead, LeadEvent, PipelineStage
from crm.services.actors import Actor
from crm.services.custom_fields import (
    custom_field_labels,
    custom_fields_apply,
    custom_fields_changed,
    custom_fields_represent,
    custom_fields_save,
    custom_fields_take,
)
from crm.services.pipeline import stage_first_open
from crm.services.timeline import timeline_event

# Fields whose changes are recorded as one `field_changed` event: model attribute → API name.
TRACKED_FIELDS: dict[str, str] = {
    "title": "title",
    "value": "value",
    "owner_id": "ownerUserId",
    "expected_close_date": "expectedCloseDate",
}
_FIELD_LABELS = {"title": "title", "value": "value", "ownerUserId": "owner", "expectedCloseDate": "expected close date"}


def _ensure_lost_reason_fits(*, stage: PipelineStage, lost_reason: str | None) -> None:
    """A lost reason belongs to lost leads only; anything else would be contradicted by the status."""
    if lost_reason and stage.kind != StageKind.LOST:
        raise errors.Invalid(
            f"lostReason applies only to leads in a lost stage; {stage.name!r} is {stage.kind}.", field="lost_reason"
        )


def lead_check_lost_reason(*, stage: PipelineStage, lost_reason: str | None) -> None:
    """A lost reason sent without a move must fit the lead's stage (400 otherwise)."""
    _ensure_lost_reason_fits(stage=stage, lost_reason=lost_reason)


def _ensure_same_entity(lead: Lead, stage: PipelineStage) -> None:
    if stage.entity_id != lead.entity_id:
        raise errors.Invalid("The stage does not exist in this entity.", field="stage_id")


def _hold_stage(stage: PipelineStage) -> None:
    """Keep the target stage from being deleted until this transaction ends.

    `FOR KEY SHARE` is what the foreign key check would take anyway; taking it now means a stage
    deletion running at the same time either finishes first (the stage is gone: a 400 here, not a
    foreign key error at commit) or waits and then finds, and moves, this lead. It does not block
    other moves into the same stage.
    """
    if is_postgres():
        table = connection.ops.quote_name(PipelineStage._meta.db_table)
        sql = f"SELECT 1 FROM {table} WHERE id = %s AND entity_id = %s FOR KEY SHARE"
        with connection.cursor() as cursor:
            cursor.execute(sql, [stage.pk, stage.entity_id])
            held = cursor.fetchone() is not None
    else:  # SQLite (the demo) serialises every write itself; checking that the stage exists is enough
        held = PipelineStage.objects.filter(pk=stage.pk, entity_id=stage.entity_id).exists()
    if not held:
        raise errors.Invalid("The stage no longer exists.", field="stage_id")


def lead_fill_new(lead: Lead, *, now: datetime) -> None:
    """Fill what follows from a new lead's stage (no query): the stage's default probability, the
    close time of a lead created directly in a won or lost stage, `stageChangedAt`. A stage of
    another entity or a lost reason outside a lost stage is refused (400)."""
    _ensure_same_entity(lead, lead.stage)
    _ensure_lost_reason_fits(stage=lead.stage, lost_reason=lead.lost_reason)
    if lead.probability_pct is None:
        lead.probability_pct = lead.stage.default_probability_pct
    lead.closed_at = now if lead.stage.kind != StageKind.OPEN else None
    lead.stage_changed_at = now


def lead_created_event(*, lead: Lead, actor: Actor, now: datetime) -> LeadEvent:
    """The `lead_created` timeline event of a new lead (unsaved)."""
    return timeline_event(
        lead=lead,
        kind=LeadEventKind.LEAD_CREATED,
        actor=actor,
        summary=f"Lead created in {lead.stage.name}",
        data={
            "title": lead.title,
            "stageId": str(lead.stage_id),
            "stageName": lead.stage.name,
            "value": _json_value(lead.value),
            "currency": lead.currency,
            "probabilityPct": lead.probability_pct,
        },
        occurred_at=now,
    )


@transaction.atomic
def lead_save_new(*, lead: Lead, actor: Actor) -> Lead:
    """Insert an unsaved lead, filling what follows from its stage, and record `lead_created`.

    Shared by `lead_create`, the bulk writes and the admin's add form so a lead made anywhere
    starts consistent: a lead created directly in a won or lost stage is closed at creation.
    """
    now = timezone.now()
    lead_fill_new(lead, now=now)
    _hold_stage(lead.stage)
    if not lead.currency:
        lead.currency = Entity.objects.values_list("default_currency", flat=True).get(pk=lead.entity_id)
    custom_fields_save(lead)
    lead_created_event(lead=lead, actor=actor, now=now).save(force_insert=True)
    feed.record_created(lead, actor=actor)
    return lead


def lead_create(*, entity: Entity, actor: Actor, stage: PipelineStage | None = None, **fields: Any) -> Lead:
    """Create a lead: default stage the first open one, probability the stage's default, currency
    the entity's; records `lead_created`."""
    if stage is None:
        stage = stage_first_open(entity=entity)
        if stage is None:  # every entity keeps an open stage; defensive only
            raise errors.Invalid("The entity has no open stage; name a stage.", field="stage_id")
    if not fields.get("currency"):
        fields["currency"] = entity.default_currency
    custom_values = custom_fields_take(fields, entity=entity, model=Lead, partial=False)
    lead = Lead(entity=entity, stage=stage, **fields)
    custom_fields_apply(lead, custom_values, fresh=False)
    return lead_save_new(lead=lead, actor=actor)


# What a stage move writes on the lead row.
STAGE_MOVE_FIELDS = ("stage", "probability_pct", "closed_at", "lost_reason", "stage_changed_at")


def lead_apply_stage(
    lead: Lead, *, stage: PipelineStage, probability_pct: int | None, lost_reason: str | None, now: datetime
) -> PipelineStage:
    """Apply the rules of a stage change to `lead` in memory (no query) and return the stage it
    left; the caller saves `STAGE_MOVE_FIELDS`. See `lead_move_stage` for the rules."""
    _ensure_lost_reason_fits(stage=stage, lost_reason=lost_reason)
    source = lead.stage
    lead.stage = stage
    lead.probability_pct = stage.default_probability_pct if probability_pct is None else probability_pct
    if stage.kind == StageKind.OPEN:
        lead.closed_at = None
        lead.lost_reason = ""
    else:
        if source.kind != stage.kind or lead.closed_at is None:
            lead.closed_at = now
        if stage.kind == StageKind.WON:
            lead.lost_reason = ""
        elif lost_reason is not None:
            lead.lost_reason = lost_reason
    lead.stage_changed_at = now
    return source


def lead_stage_event(*, lead: Lead, source: PipelineStage, actor: Actor, now: datetime) -> LeadEvent:
    """The `stage_changed` timeline event of a move from `source` to the lead's stage (unsaved)."""
    return timeline_event(
        lead=lead,
        kind=LeadEventKind.STAGE_CHANGED,
        actor=actor,
        summary=f"Stage changed from {source.name} to {lead.stage.name}",
        data={
            "fromStageId": str(source.pk),
            "fromStageName": source.name,
            "toStageId": str(lead.stage_id),
            "toStageName": lead.stage.name,
        },
        occurred_at=now,
    )


def lead_tracked_values(lead: Lead) -> dict:
    """The values of the fields a `field_changed` event reports, before an edit."""
    return {attr: getattr(lead, attr) for attr in TRACKED_FIELDS}


def lead_fields_event(
    *, lead: Lead, before: dict, actor: Actor, extra: dict | None = None, labels: dict | None = None
) -> LeadEvent | None:
    """The `field_changed` event of an edit since `before` (`lead_tracked_values`), with `extra`
    changes (custom fields, `{"customFields.<key>": [old, new]}`, labelled by `labels`); None when
    nothing tracked changed (unsaved)."""
    changes = {
        TRACKED_FIELDS[attr]: [_json_value(old), _json_value(getattr(lead, attr))]
        for attr, old in before.items()
        if old != getattr(lead, attr)
    }
    changes.update(extra or {})
    if not changes:
        return None
    labels_of = {**_FIELD_LABELS, **(labels or {})}
    labels = ", ".join(labels_of.get(name, name) for name in changes)
    return timeline_event(
        lead=lead, kind=LeadEventKind.FIELD_CHANGED, actor=actor, summary=f"Changed {labels}", data={"changes": changes}
    )


@transaction.atomic
def lead_move_stage(
    *,
    lead: Lead,
    stage: PipelineStage,
    actor: Actor,
    probability_pct: int | None = None,
    lost_reason: str | None = None,
    record_change: bool = True,
) -> Lead:
    """Move a lead to `stage`: the one place the rules of a stage change live.

    The lead row is locked so concurrent moves serialise and each records the true "from" stage.
    Moving to the current stage changes nothing. Otherwise the probability resets to the stage's
    default unless given; entering won or lost (from another kind) sets `closedAt`; returning to
    an open stage clears `closedAt` and `lostReason`; entering won clears `lostReason`; a
    `lostReason` is accepted only when entering a lost stage (400 otherwise). `stageChangedAt`
    is set and a `stage_changed` event records the actor and both stages' ids and names.
    Returns the locked, updated lead (with `stage` loaded). Records `lead.stage_changed` (one
    change for the move; `record_change=False` when the caller records the move with its own edits).
    """
    _ensure_same_entity(lead, stage)
    _hold_stage(stage)  # before the lead: stage deletion locks stages first, then leads
    locked = Lead.objects.select_for_update(of=("self",)).select_related("stage").get(pk=lead.pk)
    if locked.stage_id == stage.pk:
        return locked
    _ensure_lost_reason_fits(stage=stage, lost_reason=lost_reason)
    before = feed.snapshot(locked) if record_change else None
    now = timezone.now()
    source = lead_apply_stage(locked, stage=stage, probability_pct=probability_pct, lost_reason=lost_reason, now=now)
    locked.save(update_fields=[*STAGE_MOVE_FIELDS, "updated_at"])
    lead_stage_event(lead=locked, source=source, actor=actor, now=now).save(force_insert=True)
    if record_change:
        feed.record_updated(locked, before, action="stage_changed", actor=actor)
    return locked


@transaction.atomic
def lead_update(*, lead: Lead, actor: Actor, **fields: Any) -> Lead:
    """Apply a partial update. A new `stage` goes through `lead_move_stage` (with the
    `probability_pct` and `lost_reason` sent alongside); changes of title, value, owner and
    expected close date are recorded together as one `field_changed` event with old and new values.
    """
    stage = fields.pop("stage", None)
    custom_values = custom_fields_take(fields, entity=lead.entity_id, model=Lead, partial=True)
    if stage is not None and stage.pk != lead.stage_id:
        _ensure_same_entity(lead, stage)
        _hold_stage(stage)  # before the lead row, in the order stage deletion locks them
    locked = Lead.objects.select_for_update(of=("self",)).select_related("stage").get(pk=lead.pk)
    recorded_before = feed.snapshot(locked)
    moved = stage is not None and stage.pk != locked.stage_id
    if moved:
        locked = lead_move_stage(
            lead=locked,
            stage=stage,
            actor=actor,
            probability_pct=fields.pop("probability_pct", None),
            lost_reason=fields.pop("lost_reason", None),
            record_change=False,  # the move and the other edits are one change, recorded below
        )
    if "lost_reason" in fields:
        _ensure_lost_reason_fits(stage=locked.stage, lost_reason=fields["lost_reason"])

    before = lead_tracked_values(locked)
    custom_before = custom_fields_represent(locked) if custom_values else {}
    for name, value in fields.items():
        setattr(locked, name, value)
    custom_fields_apply(locked, custom_values, fresh=False)  # `locked` is the row as stored now
    if not fields and custom_values is None:
        feed.record_updated(locked, recorded_before, action="stage_changed" if moved else "updated", actor=actor)
        return locked
    custom_fields_save(locked)
    custom_changes, custom_labels = {}, {}
    if custom_values is not None:
        custom_changes = custom_fields_changed(custom_before, custom_fields_represent(locked))
        custom_labels = custom_field_labels(entity=locked.entity_id, object_type="lead")
    event = lead_fields_event(lead=locked, before=before, actor=actor, extra=custom_changes, labels=custom_labels)
    if event is not None:
        event.save(force_insert=True)
    feed.record_updated(locked, recorded_before, action="stage_changed" if moved else "updated", actor=actor)
    return locked


def lead_delete(*, lead: Lead) -> None:
    """Delete a lead; its activities stay (their lead becomes null), its timeline goes with it.
    Records `lead.deleted` and an `activity.updated` (leadId null) for each of its activities."""
    feed.delete_recorded(lead)


def _json_value(value: Any) -> Any:
    """Timeline data is JSON: money as a two-decimal string, dates ISO, ids as strings."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, Decimal):
        return f"{value.quantize(Decimal('0.01'))}"
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)
