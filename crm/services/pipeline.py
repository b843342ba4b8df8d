"""Pipeline stages: the defaults every entity starts with, and the writes with rules.

Every write that depends on the set of an entity's stages (create, reorder, kind changes, delete)
first locks the entity row and then its stage rows (`_lock_stages`), so two such writes for the
same entity run one after the other. `sort_order` is dense (0..n-1) and unique per entity, and that
unique constraint is not deferrable: PostgreSQL checks it row by row during an UPDATE. Orders are
therefore rewritten in two phases (first to values above every current order, then to the final
ones), so no intermediate row ever collides and concurrent reorders leave neither duplicates nor
gaps.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from uuid import UUID

from django.db import transaction
from django.db.models import Case, IntegerField, QuerySet, Value, When
from django.utils import timezone

from axiomatic import changes as feed
from axiomatic import errors
from axiomatic.models import Entity
from axiomatic.uniqueness import ensure_unique, save_unique
from crm.choices import LeadEventKind, StageKind
from crm.models import Lead, LeadEvent, PipelineStage
from crm.selectors.pipeline import stages_with_lead_counts
from crm.services.actors import Actor

DEFAULT_STAGES: tuple[tuple[str, str, int, str, str], ...] = (
    # name, kind, default probability, system key, colour
    ("New", StageKind.OPEN, 10, "new", "slate"),
    ("Contacted", StageKind.OPEN, 20, "contacted", "blue"),
    ("Qualified", StageKind.OPEN, 40, "qualified", "indigo"),
    ("Proposal", StageKind.OPEN, 60, "proposal", "violet"),
    ("Negotiation", StageKind.OPEN, 80, "negotiation", "amber"),
    ("Won", StageKind.WON, 100, "won", "green"),
    ("Lost", StageKind.LOST, 0, "lost", "red"),
)


@transaction.atomic
def stages_install_defaults(*, entity: Entity) -> list[PipelineStage]:
    """Give `entity` the seven default stages, unless it already has stages (idempotent).

    Called for every new entity (post_save of Entity) and by the data migration for entities that
    existed before stages did.
    """
    if PipelineStage.objects.for_entity(entity).exists():
        return []
    stages = PipelineStage.objects.bulk_create(
        PipelineStage(
            entity=entity,
            name=name,
            kind=kind,
            sort_order=order,
            default_probability_pct=probability,
            system_key=system_key,
            color_key=color,
        )
        for order, (name, kind, probability, system_key, color) in enumerate(DEFAULT_STAGES)
    )
    for stage in stages:
        stage.lead_count = 0
    feed.record(feed.creation(stage) for stage in stages)
    return stages


def _stage_snapshots(entity_id) -> dict:
    """Every stage of the entity as the change feed shows it (with its leadCount), one query."""
    return {stage.pk: (stage, feed.snapshot(stage)) for stage in stages_with_lead_counts(entity=entity_id)}


def _record_stage_changes(entity_id, before: dict) -> None:
    """`pipeline_stage.updated` for every stage whose representation changed since `before`."""
    after = _stage_snapshots(entity_id)
    feed.record(feed.update(stage, before[pk][1], after=data) for pk, (stage, data) in after.items() if pk in before)


def _lead_snapshots(lead_ids) -> dict:
    leads = list(feed.load(Lead, lead_ids).values())
    return {lead.pk: data for lead, data in zip(leads, feed.snapshots(leads), strict=True)}


def _record_lead_changes(before: dict, *, action: str, actor: Actor | None = None) -> None:
    """One change per lead whose representation changed since `before` (`_lead_snapshots`)."""
    feed.record(feed.updates(feed.load(Lead, before).values(), before, action=action, actor=actor))


# --- reading -------------------------------------------------------------------------------------


def stage_default_probability(*, kind: str) -> int:
    """A won stage is certain by default; open and lost stages start at 0."""
    return 100 if kind == StageKind.WON else 0


def stage_resolve(*, entity: Entity | UUID, reference: str) -> PipelineStage | None:
    """Find a stage by name (case-insensitive) or, failing that, by system key (`won`, `new`, ...).

    Clients that predate custom stages name them by their system keys; a name match wins so that a
    stage a user called "won" is still found by its own name.
    """
    reference = reference.strip()
    if not reference:
        return None
    stages = PipelineStage.objects.for_entity(entity)
    return stages.filter(name__iexact=reference).first() or stages.filter(system_key=reference).first()


def stage_first_open(*, entity: Entity | UUID) -> PipelineStage | None:
    """Where new leads go when the client names no stage: the first open stage in board order."""
    return PipelineStage.objects.for_entity(entity).filter(kind=StageKind.OPEN).order_by("sort_order", "id").first()


# --- locking and ordering ---------------------------------------------------------------------------


def _lock_stages(entity_id) -> list[PipelineStage]:
    """Serialise the entity's pipeline writes, then lock and return its stages in board order.

    The mutex is the entity row (`FOR NO KEY UPDATE`, which does not block inserts that reference
    the entity). Taking it first gives every pipeline write the same lock order; locking the stage
    rows in `sort_order` order instead deadlocks, because concurrent reorders change that order.
    The stage rows are then locked by id (a stable order) so lead moves into a stage wait for a
    delete of that stage. Statements after the mutex see every write that committed before it.
    """
    Entity.objects.select_for_update(no_key=True).filter(pk=entity_id).values_list("pk", flat=True).first()
    stages = PipelineStage.objects.for_entity(entity_id).select_for_update().order_by("id")
    return sorted(stages, key=lambda stage: (stage.sort_order, str(stage.pk)))


def _write_sort_orders(*, entity_id, ordered_ids: Sequence[UUID], current_max: int) -> None:
    """Set `sort_order` of `ordered_ids` to 0..n-1 in two UPDATEs (see the module docstring)."""
    if not ordered_ids:
        return
    stages = PipelineStage.objects.for_entity(entity_id).filter(pk__in=ordered_ids)
    offset = max(current_max, len(ordered_ids)) + 1

    def orders(base: int) -> Case:
        whens = [When(pk=pk, then=Value(base + index)) for index, pk in enumerate(ordered_ids)]
        return Case(*whens, output_field=IntegerField())

    now = timezone.now()
    stages.update(sort_order=orders(offset), updated_at=now)
    stages.update(sort_order=orders(0))


# --- writes --------------------------------------------------------------------------------------


def _ensure_name_free(*, entity_id, name: str, exclude_id=None) -> None:
    taken = PipelineStage.objects.for_entity(entity_id).named_ignoring_case(name).exclude(pk=exclude_id)
    ensure_unique(taken, message=f"A stage named {name!r} already exists.")


def _save(stage: PipelineStage, **kwargs) -> PipelineStage:
    return save_unique(
        stage,
        recheck=lambda: _ensure_name_free(entity_id=stage.entity_id, name=stage.name, exclude_id=stage.pk),
        **kwargs,
    )


@transaction.atomic
def stage_save_new(*, stage: PipelineStage) -> PipelineStage:
    """Insert an unsaved stage at the end of its entity's pipeline (used by the API and the admin).

    Names are unique per entity case-insensitively (409 with the existing id) because people and
    clients find stages by name. The stages are locked so two concurrent creates do not both pick
    the same last position. A missing default probability follows the kind.
    """
    stages = _lock_stages(stage.entity_id)
    _ensure_name_free(entity_id=stage.entity_id, name=stage.name)
    stage.sort_order = max((s.sort_order for s in stages), default=-1) + 1
    if stage.default_probability_pct is None:
        stage.default_probability_pct = stage_default_probability(kind=stage.kind)
    stage = _save(stage)
    stage.lead_count = 0
    feed.record_created(stage)
    return stage


def stage_create(
    *,
    entity: Entity,
    name: str,
    kind: str = StageKind.OPEN,
    default_probability_pct: int | None = None,
    color_key: str | None = None,
) -> PipelineStage:
    """Add a stage at the end of the pipeline (see `stage_save_new`)."""
    stage = PipelineStage(entity=entity, name=name, kind=kind, default_probability_pct=default_probability_pct)
    if color_key:
        stage.color_key = color_key
    return stage_save_new(stage=stage)


@transaction.atomic
def stage_update(*, stage: PipelineStage, **fields) -> PipelineStage:
    """Rename, recolour, re-kind or change the default probability of a stage.

    Rules: names stay unique (409); the kind of a stage with a system key is fixed (400) so that
    integrations relying on `won`/`lost` keep their meaning; a kind change may not leave the entity
    without a stage of the old kind (409). Leads in a stage whose kind changes follow it, so their
    status and `closedAt` stay true: entering won/lost sets `closedAt` on those still open,
    becoming open clears `closedAt` and `lostReason`, becoming won clears `lostReason`.
    """
    editable = ("name", "kind", "default_probability_pct", "color_key")
    changes = {attr: fields[attr] for attr in editable if fields.get(attr) is not None}
    before = _stage_snapshots(stage.entity_id)
    leads_before = None
    name = changes.get("name")
    if name is not None and name.lower() != stage.name.lower():
        _ensure_name_free(entity_id=stage.entity_id, name=name, exclude_id=stage.pk)

    new_kind = changes.get("kind", stage.kind)
    if new_kind != stage.kind:
        if stage.system_key:
            raise errors.Invalid(
                f"The kind of the system stage {stage.name!r} ({stage.system_key}) cannot change.", field="kind"
            )
        stages = _lock_stages(stage.entity_id)
        current = next((s for s in stages if s.pk == stage.pk), None)
        if current is None:  # deleted by the write we waited for
            raise errors.NotFound("Not found.")
        if not any(s.kind == current.kind and s.pk != current.pk for s in stages):
            raise errors.Conflict(f"The pipeline needs at least one {current.kind} stage; add another one first.")
        if current.kind != new_kind:
            # Their status (the stage's kind) and maybe closedAt change: one `lead.updated` each.
            in_stage = Lead.objects.for_entity(stage.entity_id).filter(stage=current).values_list("pk", flat=True)
            leads_before = _lead_snapshots(in_stage)
            _leads_follow_kind(stage=current, old_kind=current.kind, new_kind=new_kind)

    for attr, value in changes.items():
        setattr(stage, attr, value)
    # Only the edited columns: `sort_order` belongs to reorder, which may have run meanwhile.
    stage = _save(stage, update_fields=[*changes, "updated_at"]) if changes else stage
    _record_stage_changes(stage.entity_id, before)
    if leads_before:
        _record_lead_changes(leads_before, action="updated")
    return stage


def _leads_follow_kind(*, stage: PipelineStage, old_kind: str, new_kind: str) -> None:
    leads = Lead.objects.for_entity(stage.entity_id).filter(stage=stage)
    now = timezone.now()
    if new_kind == StageKind.OPEN:
        leads.update(closed_at=None, lost_reason="", updated_at=now)
        return
    if old_kind == StageKind.OPEN:
        leads.filter(closed_at__isnull=True).update(closed_at=now, updated_at=now)
    if new_kind == StageKind.WON:
        leads.exclude(lost_reason="").update(lost_reason="", updated_at=now)


@transaction.atomic
def stages_reorder(*, entity: Entity, stage_ids: Sequence[UUID]) -> None:
    """Put the entity's stages in the order of `stage_ids`, which must name each exactly once.

    A partial list is refused rather than guessed at (400): a board that missed a stage another
    user just added must reload instead of silently pushing that stage somewhere.
    """
    stages = _lock_stages(entity.pk)
    known = {stage.pk for stage in stages}
    seen: set[UUID] = set()
    duplicates = [pk for pk in stage_ids if pk in seen or seen.add(pk)]
    if duplicates:
        raise errors.Invalid(f"stageIds lists {_ids(duplicates)} more than once.", field="stage_ids")
    unknown = [pk for pk in stage_ids if pk not in known]
    if unknown:
        raise errors.Invalid(
            f"stageIds names stages that do not exist in this entity: {_ids(unknown)}.", field="stage_ids"
        )
    missing = [stage.pk for stage in stages if stage.pk not in seen]
    if missing:
        raise errors.Invalid(
            f"stageIds must list every stage of the entity exactly once; missing: {_ids(missing)}.", field="stage_ids"
        )
    if [stage.pk for stage in stages] != list(stage_ids):
        before = _stage_snapshots(entity.pk)
        _write_sort_orders(
            entity_id=entity.pk, ordered_ids=list(stage_ids), current_max=max(s.sort_order for s in stages)
        )
        _record_stage_changes(entity.pk, before)


def _ids(ids: Iterable[UUID]) -> str:
    return ", ".join(str(pk) for pk in ids)


@transaction.atomic
def stage_delete(*, stage: PipelineStage, move_leads_to: PipelineStage | None, actor: Actor) -> int:
    """Delete a stage, first moving its leads to `move_leads_to`; returns how many leads moved.

    All in one transaction with the entity's stages locked. Refused when the stage still has leads
    and no target is given (409), when the target is the stage itself (400), or when the entity
    would be left without a stage of the stage's kind (409). Moved leads are changed exactly as a
    move through `lead_move_stage` would change them (probability reset to the target's default,
    `closedAt`/`lostReason` following the target's kind) and each gets a `stage_changed` event, all
    written in bulk. The remaining stages close up their sort orders.
    """
    stages = _lock_stages(stage.entity_id)
    current = next((s for s in stages if s.pk == stage.pk), None)
    if current is None:  # deleted by the request we waited for
        raise errors.NotFound("Not found.")
    if move_leads_to is not None:
        if move_leads_to.pk == current.pk:
            raise errors.Invalid(
                "moveLeadsToStageId must be another stage than the one deleted.", field="move_leads_to_stage_id"
            )
        target = next((s for s in stages if s.pk == move_leads_to.pk), None)
        if target is None:
            raise errors.Invalid("moveLeadsToStageId names no stage of this entity.", field="move_leads_to_stage_id")
    else:
        target = None
    if not any(s.kind == current.kind and s.pk != current.pk for s in stages):
        raise errors.Conflict(f"The pipeline needs at least one {current.kind} stage; this is the last one.")

    leads = Lead.objects.for_entity(current.entity_id).filter(stage=current)
    if target is None:
        if count := leads.count():
            raise errors.Conflict(
                f"The stage {current.name!r} still has {count} lead(s); "
                "send moveLeadsToStageId to move them to another stage."
            )
        moved = 0
    else:
        moved = _bulk_move(leads=leads, source=current, target=target, actor=actor)

    before = _stage_snapshots(current.entity_id)
    current.delete()
    feed.record_deleted(current, actor=actor)
    remaining = [s for s in stages if s.pk != current.pk]
    if any(s.sort_order != index for index, s in enumerate(remaining)):
        _write_sort_orders(
            entity_id=current.entity_id,
            ordered_ids=[s.pk for s in remaining],
            current_max=max(s.sort_order for s in remaining),
        )
        _record_stage_changes(current.entity_id, before)
    return moved


MOVE_CHUNK = 2000


def _bulk_move(*, leads: QuerySet, source: PipelineStage, target: PipelineStage, actor: Actor) -> int:
    """Move `leads` (all of one stage, locked as they are read) in chunks; returns how many moved.

    Chunks keep memory and statement sizes bounded however many leads a stage holds.
    """
    now = timezone.now()
    changes: dict = {
        "stage": target,
        "probability_pct": target.default_probability_pct,
        "stage_changed_at": now,
        "updated_at": now,
    }
    if target.kind == StageKind.OPEN:
        changes.update(closed_at=None, lost_reason="")
    elif target.kind != source.kind:
        changes["closed_at"] = now
    if target.kind == StageKind.WON:
        changes["lost_reason"] = ""
    data = {
        "fromStageId": str(source.pk),
        "fromStageName": source.name,
        "toStageId": str(target.pk),
        "toStageName": target.name,
    }
    summary = f"Stage changed from {source.name} to {target.name} (stage {source.name} was deleted)"[:500]
    moved = 0
    # Each pass moves its chunk out of the stage, so the next pass reads the next one.
    while chunk := list(leads.select_for_update().order_by("id").values_list("id", flat=True)[:MOVE_CHUNK]):
        before = _lead_snapshots(chunk)
        Lead.objects.filter(pk__in=chunk).update(**changes)
        LeadEvent.objects.bulk_create(
            LeadEvent(
                entity_id=source.entity_id,
                lead_id=lead_id,
                kind=LeadEventKind.STAGE_CHANGED,
                occurred_at=now,
                actor_type=actor.type,
                actor_id=actor.id,
                actor_name=actor.name[:200],
                summary=summary,
                data=data,
            )
            for lead_id in chunk
        )
        _record_lead_changes(before, action="stage_changed", actor=actor)  # one change per lead, one insert
        moved += len(chunk)
    return moved
