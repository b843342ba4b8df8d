"""Marketing list writes: unique names, adding contacts in bulk from the CRM, unsubscribing.

`list_add_contacts` is the one way contacts get onto a list (the prospecting route calls it; the
admin may too), so the rules "no email → skipped" and "an opt-out is never undone by a re-add"
live in one place.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from uuid import UUID

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from axiomatic import errors
from axiomatic.models import Entity
from axiomatic.uniqueness import ensure_unique, save_unique
from crm.models import Company, Contact, Lead
from marketing.models import MarketingList, MarketingListMember, MemberSource, MemberStatus

MAX_IDS_PER_ADD = 1000


class SkipReason:
    NO_EMAIL = "no_email"
    UNSUBSCRIBED = "unsubscribed"
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class Skipped:
    id: UUID
    reason: str


@dataclass
class AddResult:
    """What `list_add_contacts` did: counts of distinct contacts, and why the rest were left out."""

    list_id: UUID
    added: int = 0
    already_on_list: int = 0
    skipped: list[Skipped] = field(default_factory=list)


# --- lists ---------------------------------------------------------------------------------------


def _ensure_name_free(*, entity_id: UUID, name: str, exclude_id: UUID | None = None) -> None:
    taken = MarketingList.objects.for_entity(entity_id).named_ignoring_case(name).exclude(pk=exclude_id)
    ensure_unique(taken, message=f"A marketing list named {name!r} already exists.")


def _save_list(marketing_list: MarketingList) -> MarketingList:
    return save_unique(
        marketing_list,
        recheck=lambda: _ensure_name_free(
            entity_id=marketing_list.entity_id, name=marketing_list.name, exclude_id=marketing_list.pk
        ),
    )


def list_create(*, entity: Entity, name: str, description: str = "") -> MarketingList:
    """Create a list; a name already used in the entity (case-insensitively) is a 409 with its id."""
    _ensure_name_free(entity_id=entity.pk, name=name)
    return _save_list(MarketingList(entity=entity, name=name, description=description))


def list_update(*, marketing_list: MarketingList, **fields) -> MarketingList:
    """Apply a partial update (name, description); renaming onto another list's name is a 409."""
    new_name = fields.get("name")
    if new_name is not None and new_name.lower() != marketing_list.name.lower():
        _ensure_name_free(entity_id=marketing_list.entity_id, name=new_name, exclude_id=marketing_list.pk)
    for name, value in fields.items():
        setattr(marketing_list, name, value)
    return _save_list(marketing_list)


# --- members -------------------------------------------------------------------------------------


def member_unsubscribe(*, member: MarketingListMember) -> MarketingListMember:
    """Mark a member unsubscribed, keeping the row: the row is what blocks later re-adds.

    Idempotent: unsubscribing twice keeps the first `unsubscribed_at`.
    """
    if member.status != MemberStatus.UNSUBSCRIBED:
        member.status = MemberStatus.UNSUBSCRIBED
        member.unsubscribed_at = timezone.now()
        member.save(update_fields=["status", "unsubscribed_at", "updated_at"])
    return member


def _unique(ids: Iterable[UUID]) -> list[UUID]:
    return list(dict.fromkeys(ids))


@transaction.atomic
def list_add_contacts(
    *,
    marketing_list: MarketingList,
    contact_ids: Iterable[UUID] = (),
    company_ids: Iterable[UUID] = (),
    lead_ids: Iterable[UUID] = (),
    source: str = MemberSource.API,
) -> AddResult:
    """Put the contacts named directly, through their companies and through their leads on a list.

    Why it is shaped this way:
    - One bulk operation: ids are resolved with one `id__in` query per kind, existing members with
      one query, and new rows with one `INSERT ... ON CONFLICT DO NOTHING` (per 5,000 rows), so
      the number of queries does not grow with the number of ids.
    - The list row is locked (`SELECT ... FOR UPDATE`) so concurrent adds to the same list run one
      after the other; the pre-check of existing members is therefore exact and `added` is true.
      The unique (list, contact) constraint with ON CONFLICT stays as a safety net.
    - A company contributes every contact with a membership there; a lead its contact. Each
      contact counts once, however many paths reach it (first path in the order contacts,
      companies, leads decides where it is reported).
    - `skipped[].id` is the id the caller can act on: the contact's id for `no_email` and
      `unsubscribed` (also when reached through a company or lead), and the id as sent for
      `not_found` (unknown, another entity's, or a lead without a contact).
    - Opt-outs are never undone: a contact whose row is unsubscribed, or whose current email is
      unsubscribed on this list under another row (e.g. left by a deleted contact), is skipped.
    """
    entity_id = marketing_list.entity_id
    contact_ids = _unique(contact_ids)
    company_ids = _unique(company_ids)
    lead_ids = _unique(lead_ids)
    locked = (
        MarketingList.objects.select_for_update().filter(pk=marketing_list.pk).values_list("pk", flat=True).order_by()
    )
    if locked.first() is None:
        raise errors.NotFound("Marketing list not found.")  # deleted since the caller loaded it

    result = AddResult(list_id=marketing_list.pk)
    # Each candidate contact in the order it was reached: contact id → email ("" when none).
    candidates: dict[UUID, str] = {}
    not_found: list[UUID] = []

    if contact_ids:
        found = dict(
            Contact.objects.for_entity(entity_id).filter(pk__in=contact_ids).order_by().values_list("id", "email")
        )
        for contact_id in contact_ids:
            if contact_id in found:
                candidates.setdefault(contact_id, found[contact_id] or "")
            else:
                not_found.append(contact_id)

    if company_ids:
        # LEFT JOIN: a company without memberships still comes back (with NULLs), so it is "found".
        rows = (
            Company.objects.for_entity(entity_id)
            .filter(pk__in=company_ids)
            .values_list("id", "memberships__contact_id", "memberships__contact__email")
            .order_by("id", "memberships__created_at", "memberships__contact_id")
        )
        by_company: dict[UUID, list[tuple[UUID, str]]] = {}
        for company_id, contact_id, email in rows:
            members = by_company.setdefault(company_id, [])
            if contact_id is not None:
                members.append((contact_id, email or ""))
        for company_id in company_ids:
            if company_id not in by_company:
                not_found.append(company_id)
            for contact_id, email in by_company.get(company_id, ()):
                candidates.setdefault(contact_id, email)

    if lead_ids:
        rows = (
            Lead.objects.for_entity(entity_id)
            .filter(pk__in=lead_ids)
            .order_by()
            .values_list("id", "contact_id", "contact__email")
        )
        by_lead = {lead_id: (contact_id, email or "") for lead_id, contact_id, email in rows}
        for lead_id in lead_ids:
            contact_id, email = by_lead.get(lead_id, (None, ""))
            if contact_id is None:
                not_found.append(lead_id)
            else:
                candidates.setdefault(contact_id, email)

    # An id sent in two lists (or twice) is reported once.
    result.skipped.extend(Skipped(id=i, reason=SkipReason.NOT_FOUND) for i in dict.fromkeys(not_found))
    if not candidates:
        return result

    emails = {email.lower() for email in candidates.values() if email}
    existing = (
        MarketingListMember.objects.filter(marketing_list=marketing_list)
        .filter(Q(contact_id__in=list(candidates)) | Q(email__in=emails))
        .order_by()
    )
    status_by_contact: dict[UUID, str] = {}
    status_by_email: dict[str, str] = {}
    for contact_id, email, status in existing.values_list("contact_id", "email", "status"):
        if contact_id is not None:
            status_by_contact[contact_id] = status
        # An opt-out of an address wins over a subscription of the same address.
        if status_by_email.get(email.lower()) != MemberStatus.UNSUBSCRIBED:
            status_by_email[email.lower()] = status

    now = timezone.now()
    new_rows: list[MarketingListMember] = []
    for contact_id, raw_email in candidates.items():
        email = raw_email.lower()
        status = status_by_contact.get(contact_id)
        if status is None and email:
            status = status_by_email.get(email)
        if status == MemberStatus.UNSUBSCRIBED:
            result.skipped.append(Skipped(id=contact_id, reason=SkipReason.UNSUBSCRIBED))
        elif status == MemberStatus.SUBSCRIBED:
            result.already_on_list += 1
        elif not email:
            result.skipped.append(Skipped(id=contact_id, reason=SkipReason.NO_EMAIL))
        else:
            status_by_email[email] = MemberStatus.SUBSCRIBED  # two contacts, one address: add it once
            new_rows.append(
                MarketingListMember(
                    id=uuid.uuid4(),
                    entity_id=entity_id,
                    marketing_list=marketing_list,
                    contact_id=contact_id,
                    email=email,
                    status=MemberStatus.SUBSCRIBED,
                    source=source,
                    added_at=now,
                )
            )
    if new_rows:
        MarketingListMember.objects.bulk_create(new_rows, ignore_conflicts=True, batch_size=5000)
    result.added = len(new_rows)
    return result
