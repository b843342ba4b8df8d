"""Merging two contacts or two companies into one, losing nothing.

`contact_merge` / `company_merge` keep the record `survivor` and remove `merged_id`, in one
transaction:

- Both rows are locked in a fixed order (by id), so two merges over the same records run one
  after the other: A←B racing B←A, or A←B racing C←B, ends with the second one finding its record
  gone (404) and no row lost. The contact services lock the contact row too, so a membership
  written meanwhile waits for the merge.
- Every foreign key that points at the merged record is moved, found from the model's
  `_meta.get_fields(include_hidden=True)` (so a relation a later feature adds is moved too, hidden
  `related_name="+"` ones included; one that needs a fold
  rule — a unique constraint on the key — and has none stops the merge loudly, and a test walks
  the relations). Moves are bulk UPDATEs, never a save per row. Folds: memberships at the same
  company (contact merge) or of the same contact (company merge) become one, which stays primary
  if either was; list members of the same list become one, unsubscribed if either was.
- Empty fields of the survivor take the merged record's values; fields named in `fields_from`
  take them regardless; `custom_fields` (when the model has it) key by key the same way.
- The change feed records the moved rows' `updated`, the folded rows' `deleted`, the survivor's
  `updated` and the merged record's `deleted` with `data.mergedInto`; each moved lead's timeline
  gets a `field_changed`. A tombstone (`MergedRecord`) answers later reads of the merged id.

`dry_run` counts and builds the resulting record without writing anything.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import models, transaction
from django.db.models import Min
from django.utils import timezone

from axiomatic import changes, errors
from axiomatic.models import Entity
from axiomatic.timestamps import iso_utc
from crm.choices import LeadEventKind
from crm.models import (
    Activity,
    Company,
    CompanyDuplicate,
    CompanyMembership,
    Contact,
    ContactDuplicate,
    Lead,
    LeadEvent,
    MergedRecord,
    OutboundEmail,
)
from crm.models.duplicates import DuplicateKind
from crm.selectors.custom_fields import definitions_for
from crm.services.actors import Actor
from crm.services.companies import company_sync_archived_at
from crm.services.contacts import IDENTITY_MESSAGE, contact_is_identifiable
from crm.services.duplicates import companies_refresh, company_contacts_refresh, contacts_refresh
from marketing.models import MarketingListMember, MemberStatus

# How each related model is named in the answer's `moved` (always present, 0 when none);
# relations added later appear under their model's name.
MOVED_KEYS: dict[type[models.Model], str] = {
    CompanyMembership: "memberships",
    Lead: "leads",
    Activity: "activities",
    OutboundEmail: "emails",
    MarketingListMember: "listMembers",
}
# Rows about the records themselves rather than data pointing at them: found again for the survivor.
DERIVED = (ContactDuplicate, CompanyDuplicate)
# Bookkeeping columns never copied from the merged record.
NOT_MERGED = {"id", "entity", "created_at", "updated_at", "name_key", "phone_key", "email_key", "website_host"}
# Company fields derived from another one (set by the company rules, not chosen on their own).
DERIVED_FIELDS = {"archived_at"}


@dataclass
class MergeResult:
    """What a merge did (or, dry, would do): the survivor as it is (would be) and the moved counts."""

    survivor: models.Model
    moved: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def mergeable_fields(model: type[models.Model]) -> dict[str, models.Field]:
    """The fields a merge may fill, keyed by their API name (`firstName`, `ownerUserId`, ...)."""
    result = {}
    for item in model._meta.concrete_fields:
        if item.name in NOT_MERGED or item.name in DERIVED_FIELDS or item.primary_key:
            continue
        if not item.editable and item.name != "custom_fields":
            continue
        api = "ownerUserId" if item.name == "owner" else _camel(item.name)
        result[api] = item
    return result


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == {} or value == []


def _takes(source: str | None, mine: Any, theirs: Any) -> bool:
    """Whether the survivor takes the merged record's value: named in fieldsFrom as "merged", or
    not named at all and the survivor's is empty while the merged one's is not."""
    return source == "merged" or (source is None and _empty(mine) and not _empty(theirs))


SOURCES = ("merged", "survivor")


def _flat_sources(fields_from: dict[str, Any]) -> dict[str, Any]:
    """`{"customFields": {"tier": "merged"}}` → `{"customFields.tier": "merged"}` (both forms are
    taken; `{"customFields": "merged"}` stays: every custom field)."""
    flat: dict[str, Any] = {}
    for key, source in fields_from.items():
        if key == "customFields" and isinstance(source, dict):
            flat.update({f"customFields.{name}": value for name, value in source.items()})
        else:
            flat[key] = source
    return flat


def _custom_values(survivor, merged, sources: dict[str, Any], *, default: Any) -> dict | None:
    """The survivor's new `custom_fields`, or None when unchanged. Values are stored per definition
    (`storage_key`) in a stored form both records share, so a value moves as stored; `sources` is
    keyed by the API's custom field keys (unknown ones → 400). Only defined fields are considered."""
    object_type = type(survivor)._meta.model_name
    definitions = {d.key: d for d in definitions_for(entity=survivor.entity_id, object_type=object_type)}
    unknown = sorted(set(sources) - set(definitions))
    if unknown:
        names = ", ".join(f"customFields.{key}" for key in unknown)
        raise errors.Invalid(f"fieldsFrom names unknown fields: {names}.", field="fields_from")
    mine, theirs = dict(survivor.custom_fields or {}), merged.custom_fields or {}
    combined = dict(mine)
    for key, definition in definitions.items():
        stored = definition.storage_key
        if _takes(sources.get(key, default), mine.get(stored), theirs.get(stored)):
            if theirs.get(stored) is None:
                combined.pop(stored, None)  # null is never stored: the merged record had no value
            else:
                combined[stored] = theirs[stored]
    return combined if combined != mine else None


def _resulting_values(survivor, merged, fields_from: dict[str, Any]) -> dict[str, Any]:
    """attname → value the survivor takes from the merged record."""
    fields = mergeable_fields(type(survivor))
    fields_from = _flat_sources(fields_from)
    custom = {key.removeprefix("customFields."): v for key, v in fields_from.items() if key.startswith("customFields.")}
    plain = {key: v for key, v in fields_from.items() if not key.startswith("customFields.")}
    unknown = [key for key in plain if key not in fields]
    if unknown or (custom and "customFields" not in fields):
        names = ", ".join(sorted([*unknown, *(f"customFields.{key}" for key in custom)]))
        raise errors.Invalid(f"fieldsFrom names unknown fields: {names}.", field="fields_from")
    bad = [key for key, source in fields_from.items() if not isinstance(source, str) or source not in SOURCES]
    if bad:
        raise errors.Invalid('fieldsFrom values must be "merged" or "survivor".', field="fields_from")
    values: dict[str, Any] = {}
    for api, item in fields.items():
        if item.name == "custom_fields":
            combined = _custom_values(survivor, merged, custom, default=plain.get("customFields"))
            if combined is not None:
                values[item.attname] = combined
            continue
        mine, theirs = getattr(survivor, item.attname), getattr(merged, item.attname)
        if _takes(plain.get(api), mine, theirs) and mine != theirs:
            values[item.attname] = theirs
    return values


# --- relations ------------------------------------------------------------------------------------


def reverse_relations(model: type[models.Model]) -> list:
    """Every one-to-many (or one-to-one) relation pointing at `model`, hidden ones included
    (`related_name="+"`, as an outbound email's contact and company: `_meta.related_objects` leaves
    those out). Many-to-many ones go through a model listed here (a contact's companies through
    memberships)."""
    return [
        field
        for field in model._meta.get_fields(include_hidden=True)
        if field.auto_created and not field.concrete and (field.one_to_many or field.one_to_one)
    ]


def _unique_with(rel) -> bool:
    """Whether moving the foreign key could break a unique constraint (then it needs a fold rule)."""
    related = rel.related_model._meta
    if rel.one_to_one or rel.field.unique:
        return True
    sets = [set(c.fields) for c in related.constraints if isinstance(c, models.UniqueConstraint) and c.fields]
    sets += [set(group) for group in related.unique_together]
    return any(rel.field.name in group for group in sets)


FOLDED = {(Contact, CompanyMembership), (Company, CompanyMembership), (Contact, MarketingListMember)}


def relation_plan(model: type[models.Model]) -> dict[str, list]:
    """How a merge treats each reverse relation of `model`: `fold`, `move` (bulk UPDATE) or
    `derived` (found again afterwards). A relation that cannot be moved safely and has no fold rule
    is an error here, before anything is written (and in the test that walks the relations)."""
    plan: dict[str, list] = {"fold": [], "move": [], "derived": []}
    for rel in reverse_relations(model):
        if rel.related_model in DERIVED:
            plan["derived"].append(rel)
        elif (model, rel.related_model) in FOLDED:
            plan["fold"].append(rel)
        elif _unique_with(rel):
            raise RuntimeError(
                f"{rel.related_model.__name__}.{rel.field.name} is unique: merging {model.__name__} needs a fold rule "
                "for it in crm.services.merge"
            )
        else:
            plan["move"].append(rel)
    return plan


def _moved_key(related: type[models.Model]) -> str:
    return MOVED_KEYS.get(related, _camel(related._meta.model_name) + "s")


def _api_key(model, name: str) -> str:
    """The key a column has in the model's representation (`contact` → `contactId`)."""
    found = model._meta.get_field(name)
    return _camel(found.name) + "Id" if found.is_relation else _camel(name)


def _json_value(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return iso_utc(value)
    return value


class _Merge:
    """One merge's state: the records, what moved, and the change records to write at the end."""

    def __init__(self, *, model, kind: str, entity_id, survivor, merged, actor: Actor | None, dry_run: bool) -> None:
        self.model, self.kind, self.entity_id = model, kind, entity_id
        self.survivor, self.merged, self.actor, self.dry_run = survivor, merged, actor, dry_run
        self.moved: dict[str, int] = dict.fromkeys(MOVED_KEYS.values(), 0)
        self.before: dict[type, dict] = {}  # feed rows that change, snapshots before
        self.deleted: list[changes.ChangeRecord] = []

    def count(self, related, n: int) -> None:
        key = _moved_key(related)
        self.moved[key] = self.moved.get(key, 0) + n

    def remember(self, related, queryset, fields: tuple[str, ...] = (), extra: dict | None = None) -> list:
        """The ids of the rows about to change, and (feed objects) the old values of the columns
        `fields` that will change, keyed as their representation; `extra`, other keys' old values.

        Only those values are read now, not whole representations: a merge moving 10,000 rows
        represents each once, after the move, and `previous` is what differs from these."""
        names = ["pk", *fields]
        if any(f.name == "updated_at" for f in related._meta.concrete_fields):
            names.append("updated_at")
        rows = list(queryset.values_list(*names))
        if not self.dry_run and changes.object_type_of(related):
            known = self.before.setdefault(related, {})
            for row in rows:
                old = {
                    _api_key(related, name): _json_value(value) for name, value in zip(names[1:], row[1:], strict=False)
                }
                known[row[0]] = {**old, **(extra or {}), **known.get(row[0], {})}
        return [row[0] for row in rows]

    def delete_rows(self, related, pks: list) -> None:
        if not pks or self.dry_run:
            return
        if changes.object_type_of(related):
            self.deleted += [
                changes.deletion(model=related, pk=pk, entity_id=self.entity_id, actor=self.actor) for pk in pks
            ]
        related._base_manager.filter(pk__in=pks).delete()


def _fold_contact_memberships(job: _Merge, rel) -> None:
    survivor, merged = job.survivor.pk, job.merged.pk
    mine = CompanyMembership.objects.filter(contact_id=survivor)
    theirs = CompanyMembership.objects.filter(contact_id=merged)
    clashing = list(theirs.filter(company_id__in=mine.values("company_id")).values("pk", "company_id", "is_primary"))
    survivor_has_primary = mine.filter(is_primary=True).exists()
    job.count(CompanyMembership, theirs.count())
    if job.dry_run:
        return
    job.remember(
        CompanyMembership, mine.filter(company_id__in=[row["company_id"] for row in clashing]), ("is_primary",)
    )
    moving = job.remember(
        CompanyMembership, theirs.exclude(pk__in=[row["pk"] for row in clashing]), ("contact", "is_primary")
    )
    promote = next((row["company_id"] for row in clashing if row["is_primary"]), None)
    job.delete_rows(CompanyMembership, [row["pk"] for row in clashing])
    now = timezone.now()
    if survivor_has_primary:
        CompanyMembership.objects.filter(pk__in=moving).update(contact_id=survivor, is_primary=False, updated_at=now)
    else:
        CompanyMembership.objects.filter(pk__in=moving).update(contact_id=survivor, updated_at=now)
        if promote is not None:
            mine.filter(company_id=promote).update(is_primary=True, updated_at=now)


def _fold_company_memberships(job: _Merge, rel) -> None:
    survivor, merged = job.survivor.pk, job.merged.pk
    mine = CompanyMembership.objects.filter(company_id=survivor)
    theirs = CompanyMembership.objects.filter(company_id=merged)
    job.count(CompanyMembership, theirs.count())
    if job.dry_run:
        return
    clashing = theirs.filter(contact_id__in=mine.values("contact_id"))
    clash_rows = list(clashing.values_list("pk", "contact_id", "is_primary"))
    promote = [contact for _, contact, primary in clash_rows if primary]
    job.remember(
        CompanyMembership, mine.filter(contact_id__in=[contact for _, contact, _ in clash_rows]), ("is_primary",)
    )
    moving = theirs.exclude(pk__in=[pk for pk, _, _ in clash_rows])
    job.remember(CompanyMembership, moving, ("company",), {"companyName": job.merged.name})
    # Contacts whose primary company was the merged one: their companyId changes.
    job.remember(
        Contact,
        Contact.objects.filter(memberships__company_id=merged, memberships__is_primary=True),
        (),
        {"companyId": str(merged)},
    )
    job.delete_rows(CompanyMembership, [pk for pk, _, _ in clash_rows])
    now = timezone.now()
    moving.update(company_id=survivor, updated_at=now)
    if promote:
        mine.filter(contact_id__in=promote).update(is_primary=True, updated_at=now)


def _fold_list_members(job: _Merge, rel) -> None:
    survivor, merged = job.survivor.pk, job.merged.pk
    mine = MarketingListMember.objects.filter(contact_id=survivor)
    theirs = MarketingListMember.objects.filter(contact_id=merged)
    job.count(MarketingListMember, theirs.count())
    if job.dry_run:
        return
    clashing = list(theirs.filter(marketing_list_id__in=mine.values("marketing_list_id")).values())
    job.remember(
        MarketingListMember,
        mine.filter(marketing_list_id__in=[row["marketing_list_id"] for row in clashing]),
        ("status", "unsubscribed_at"),
    )
    moving = job.remember(MarketingListMember, theirs.exclude(pk__in=[row["id"] for row in clashing]), ("contact",))
    unsubscribed = [row for row in clashing if row["status"] == MemberStatus.UNSUBSCRIBED]
    job.delete_rows(MarketingListMember, [row["id"] for row in clashing])
    now = timezone.now()
    for row in unsubscribed:  # an opt-out is never lost: the kept row becomes (stays) unsubscribed
        kept = mine.filter(marketing_list_id=row["marketing_list_id"])
        earliest = kept.aggregate(at=Min("unsubscribed_at"))["at"]
        at = min(t for t in (earliest, row["unsubscribed_at"], now) if t is not None)
        kept.update(status=MemberStatus.UNSUBSCRIBED, unsubscribed_at=at, updated_at=now)
    MarketingListMember.objects.filter(pk__in=moving).update(contact_id=survivor, updated_at=now)


FOLD_RULES = {
    (Contact, CompanyMembership): _fold_contact_memberships,
    (Company, CompanyMembership): _fold_company_memberships,
    (Contact, MarketingListMember): _fold_list_members,
}


def _move(job: _Merge, rel) -> None:
    related, attname = rel.related_model, rel.field.attname
    rows = related._base_manager.filter(**{attname: job.merged.pk})
    n = rows.count() if job.dry_run else len(job.remember(related, rows, (rel.field.name,)))
    job.count(related, n)
    if job.dry_run or not n:
        return
    if related is Lead:
        _lead_events(job, list(rows.values_list("pk", flat=True)), attname)
    updates: dict[str, Any] = {attname: job.survivor.pk}
    if any(f.name == "updated_at" for f in related._meta.concrete_fields):
        updates["updated_at"] = timezone.now()
    rows.update(**updates)


def _lead_events(job: _Merge, lead_ids: list, attname: str) -> None:
    """Each moved lead's timeline says which record it now points at (one bulk insert)."""
    api = "contactId" if attname == "contact_id" else "companyId"
    label = "contact" if attname == "contact_id" else "company"
    actor = job.actor or Actor.system()
    now = timezone.now()
    LeadEvent.objects.bulk_create(
        LeadEvent(
            entity_id=job.entity_id,
            lead_id=pk,
            kind=LeadEventKind.FIELD_CHANGED,
            occurred_at=now,
            actor_type=actor.type,
            actor_id=actor.id,
            actor_name=actor.name[:200],
            summary=f"Changed {label} (merged into {job.survivor})"[:500],
            data={"changes": {api: [str(job.merged.pk), str(job.survivor.pk)]}, "merge": True},
        )
        for pk in lead_ids
    )


# --- the merge ----------------------------------------------------------------------------------------


def _lock(model, entity: Entity, survivor_id, merged_id) -> tuple[Any, Any]:
    """Both rows, locked in id order (a fixed order: two merges cannot deadlock); 404 for a gone one."""
    rows = {
        row.pk: row
        for row in model.objects.for_entity(entity)
        .select_for_update()
        .filter(pk__in=[survivor_id, merged_id])
        .order_by("pk")
    }
    name = model._meta.verbose_name
    if survivor_id not in rows:
        raise errors.NotFound(f"{name.capitalize()} not found.")
    if merged_id not in rows:
        raise errors.NotFound(f"No {name} with that mergeId exists in this entity.", field="merge_id")
    return rows[survivor_id], rows[merged_id]


def _merge(
    *,
    model,
    kind: str,
    survivor,
    merge_id,
    fields_from: dict[str, str] | None,
    dry_run: bool,
    actor: Actor | None,
) -> MergeResult:
    try:
        merge_id = uuid.UUID(str(merge_id))
    except ValueError:
        raise errors.Invalid("mergeId must be a UUID.", field="merge_id") from None
    if merge_id == survivor.pk:
        raise errors.Invalid(f"A {model._meta.verbose_name} cannot be merged into itself.", field="merge_id")
    plan = relation_plan(model)
    entity_id = survivor.entity_id
    with transaction.atomic():
        survivor, merged = _lock(model, entity_id, survivor.pk, merge_id)
        values = _resulting_values(survivor, merged, fields_from or {})
        job = _Merge(
            model=model,
            kind=kind,
            entity_id=entity_id,
            survivor=survivor,
            merged=merged,
            actor=actor,
            dry_run=dry_run,
        )
        survivor_before = None if dry_run else changes.snapshot_fresh(survivor)
        for rel in plan["fold"]:
            FOLD_RULES[(model, rel.related_model)](job, rel)
        for rel in plan["move"]:
            _move(job, rel)
        for name, value in values.items():
            setattr(survivor, name, value)
        if model is Contact and not contact_is_identifiable(
            first_name=survivor.first_name, last_name=survivor.last_name, email=survivor.email
        ):
            raise errors.Invalid(IDENTITY_MESSAGE, field="fields_from")
        if dry_run:
            transaction.set_rollback(True)  # nothing was written; make sure of it
            return MergeResult(survivor=survivor, moved=job.moved, dry_run=True)
        _finish(job, values, survivor_before)
    return MergeResult(survivor=job.survivor, moved=job.moved)


def _finish(job: _Merge, values: dict, survivor_before: dict | None) -> None:
    model, survivor, merged = job.model, job.survivor, job.merged
    # The merged record goes first: its unique values (email, domain) may move to the survivor.
    model._base_manager.filter(pk=merged.pk).delete()
    if values:
        if model is Company:
            company_sync_archived_at(survivor)  # the company rule: archivedAt follows the status
            values = {**values, "archived_at": survivor.archived_at}
        survivor.save(update_fields=[*values, "updated_at"])
    MergedRecord.objects.filter(entity_id=job.entity_id, kind=job.kind, survivor_id=merged.pk).update(
        survivor_id=survivor.pk, updated_at=timezone.now()
    )
    MergedRecord.objects.create(entity_id=job.entity_id, kind=job.kind, merged_id=merged.pk, survivor_id=survivor.pk)

    records: list[changes.ChangeRecord | None] = []
    for related, old in job.before.items():
        rows = list(changes.load(related, old).values())
        for row, after in zip(rows, changes.snapshots(rows), strict=True):
            records.append(changes.update(row, {**after, **old[row.pk]}, after=after, actor=job.actor))
    records += job.deleted
    records.append(changes.update(survivor, survivor_before, after=changes.snapshot_fresh(survivor), actor=job.actor))
    gone = changes.deletion(model=model, pk=merged.pk, entity_id=job.entity_id, actor=job.actor)
    gone.data["mergedInto"] = str(survivor.pk)
    records.append(gone)
    changes.record(records)

    if model is Contact:
        contacts_refresh(contact_ids=[survivor.pk])
    else:
        companies_refresh(company_ids=[survivor.pk])
        company_contacts_refresh(company_id=survivor.pk, entity_id=job.entity_id)


def contact_merge(
    *,
    contact: Contact,
    merge_id,
    fields_from: dict[str, str] | None = None,
    dry_run: bool = False,
    actor: Actor | None = None,
) -> MergeResult:
    """Merge the contact `merge_id` into `contact` (which survives); see the module docstring."""
    return _merge(
        model=Contact,
        kind=DuplicateKind.CONTACT,
        survivor=contact,
        merge_id=merge_id,
        fields_from=fields_from,
        dry_run=dry_run,
        actor=actor,
    )


def company_merge(
    *,
    company: Company,
    merge_id,
    fields_from: dict[str, str] | None = None,
    dry_run: bool = False,
    actor: Actor | None = None,
) -> MergeResult:
    """Merge the company `merge_id` into `company` (which survives); see the module docstring."""
    return _merge(
        model=Company,
        kind=DuplicateKind.COMPANY,
        survivor=company,
        merge_id=merge_id,
        fields_from=fields_from,
        dry_run=dry_run,
        actor=actor,
    )


def merged_into(*, entity, kind: str, pk) -> uuid.UUID | None:
    """The survivor a merged record's id now lives in (None when it was never merged)."""
    return (
        MergedRecord.objects.filter(entity_id=getattr(entity, "pk", entity), kind=kind, merged_id=pk)
        .values_list("survivor_id", flat=True)
        .first()
    )
