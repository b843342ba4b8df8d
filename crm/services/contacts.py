"""Contact and company-membership writes.

The rules that need more than one row live here:

- a contact's email is unique per entity (409 with the existing id, also when a concurrent write
  wins the race to the unique index);
- a contact has at most one primary membership, enforced by a partial unique index. Every write
  that can touch the primary flag first locks the contact row (`SELECT ... FOR UPDATE`), then
  demotes the old primary, then promotes the new one. Two switches of the same contact therefore
  run one after the other and the index is never violated (no 500), however close they come;
- `companyId` on a contact is the primary membership's company, so writing it creates or
  promotes a membership.

The API views, the admin and any other caller go through these functions.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Final

from django.db import transaction
from django.utils import timezone

from axiomatic import changes, errors
from axiomatic.models import Entity
from axiomatic.uniqueness import ensure_unique, save_unique
from crm.models import Company, CompanyMembership, Contact
from crm.services.custom_fields import (
    custom_fields_apply,
    custom_fields_conflict,
    custom_fields_ensure_unique,
    custom_fields_take,
)
from crm.services.duplicates import contacts_refresh


class _Unset:
    """Marks an argument that was not given (different from an explicit None)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()


# --- contacts -----------------------------------------------------------------------------------


IDENTITY_MESSAGE = "A contact needs at least one of firstName, lastName or email."
EMAIL_TAKEN_MESSAGE = "A contact with email {email} already exists."


def contact_email_normalise(email: str | None) -> str | None:
    """Emails are compared lower-cased (uniqueness per entity, marketing lists); blank means none."""
    return (email or "").strip().lower() or None


def contact_is_identifiable(*, first_name: str, last_name: str, email: str | None) -> bool:
    """A contact must be findable by a name or an address (API and admin alike)."""
    return bool(first_name or last_name or email)


def _ensure_identifiable(contact: Contact) -> None:
    if not contact_is_identifiable(first_name=contact.first_name, last_name=contact.last_name, email=contact.email):
        raise errors.Invalid(IDENTITY_MESSAGE)


def _ensure_email_free(*, entity_id, email: str | None, exclude_id=None) -> None:
    if not email:
        return
    taken = Contact.objects.for_entity(entity_id).filter(email=email).exclude(pk=exclude_id)
    ensure_unique(taken, message=EMAIL_TAKEN_MESSAGE.format(email=email))


def _save_contact(contact: Contact, *, update_fields: list[str] | None = None) -> Contact:
    def recheck() -> None:
        _ensure_email_free(entity_id=contact.entity_id, email=contact.email, exclude_id=contact.pk)
        custom_fields_conflict(contact)

    custom_fields_ensure_unique(contact)
    return save_unique(contact, recheck=recheck, update_fields=update_fields)


def _state(contact: Contact) -> tuple[dict | None, dict]:
    """The contact and its memberships as the change feed shows them (`data`), read now."""
    fresh = changes.load(Contact, [contact.pk]).get(contact.pk)
    memberships = CompanyMembership.objects.filter(contact_id=contact.pk).select_related("company").order_by("pk")
    return (changes.snapshot(fresh) if fresh else None), {m.pk: (m, changes.snapshot(m)) for m in memberships}


def _record_state(contact: Contact, before: tuple[dict | None, dict] | None) -> None:
    """Record what a write did to the contact and its memberships since `before` (a `_state`):
    created, updated (the primary flag, `companyId`) and deleted memberships, in one insert."""
    old_contact, old_memberships = before or (None, {})
    new_contact, new_memberships = _state(contact)
    records = [changes.update(contact, old_contact, after=new_contact)] if new_contact else []
    for pk, (row, data) in new_memberships.items():
        records.append(changes.update(row, old_memberships[pk][1] if pk in old_memberships else None, after=data))
    records += [changes.deletion(row) for pk, (row, _) in old_memberships.items() if pk not in new_memberships]
    changes.record(records)
    contacts_refresh(contact_ids=[contact.pk], new=before is None)  # its duplicate pairs, same transaction


def _lock_contact(contact: Contact) -> None:
    """Serialise writes to one contact's memberships; must run inside a transaction.

    A contact deleted meanwhile is a 404, as if the request had come a moment later.
    """
    locked = Contact.objects.select_for_update().filter(pk=contact.pk).values_list("pk", flat=True).first()
    if locked is None:
        raise errors.NotFound("Contact not found.")


def contact_create(*, entity: Entity, company: Company | None = None, **fields: Any) -> Contact:
    """Create a contact; `company` (the API's `companyId`) becomes its primary membership.

    Needs at least one of first name, last name or email (400); an email already used in the
    entity is a 409 with the existing contact's id.
    """
    if "email" in fields:
        fields["email"] = contact_email_normalise(fields["email"])
    custom_values = custom_fields_take(fields, entity=entity, model=Contact, partial=False)
    contact = Contact(entity=entity, **fields)
    custom_fields_apply(contact, custom_values, fresh=False)
    _ensure_identifiable(contact)
    _ensure_email_free(entity_id=entity.pk, email=contact.email)
    with transaction.atomic():
        _save_contact(contact)
        if company is not None:
            contact_set_primary_company(contact=contact, company=company)
        _record_state(contact, None)
    return contact


def contact_update(*, contact: Contact, company: Company | None | _Unset = UNSET, **fields: Any) -> Contact:
    """Apply a partial update.

    `company` (the API's `companyId`), when given, switches the primary membership: see
    `contact_set_primary_company`. The contact must keep a first name, last name or email.
    """
    if "email" in fields:
        fields["email"] = contact_email_normalise(fields["email"])
    if "email" in fields and fields["email"] != contact.email:
        _ensure_email_free(entity_id=contact.entity_id, email=fields["email"], exclude_id=contact.pk)
    custom_values = custom_fields_take(fields, entity=contact.entity_id, model=Contact, partial=True)
    for name, value in fields.items():
        setattr(contact, name, value)
    _ensure_identifiable(contact)
    with transaction.atomic():
        _lock_contact(contact)  # a contact deleted meanwhile is a 404, not a failed UPDATE
        before = _state(contact)
        custom_fields_apply(contact, custom_values, fresh=True)  # merged into the values as locked
        # Only the fields sent: a concurrent PATCH of other fields is not overwritten.
        _save_contact(contact, update_fields=[*fields, *(["custom_fields"] if custom_values else []), "updated_at"])
        if not isinstance(company, _Unset):
            contact_set_primary_company(contact=contact, company=company)
        _record_state(contact, before)
    return contact


def contact_delete(*, contact: Contact) -> None:
    """Delete a contact with its memberships.

    Leads, activities and emails that pointed at it keep their history: their foreign keys are
    `SET_NULL`, so they answer `contactId: null` afterwards.
    """
    with transaction.atomic():
        _lock_contact(contact)
        changes.delete_recorded(contact)  # its memberships, and the rows whose contactId becomes null


# --- primary membership -------------------------------------------------------------------------


def _demote_primary(*, contact: Contact, keep: CompanyMembership | None = None) -> None:
    """Clear the primary flag of the contact's memberships (but `keep`); the contact is locked."""
    primaries = CompanyMembership.objects.filter(contact_id=contact.pk, is_primary=True)
    if keep is not None:
        primaries = primaries.exclude(pk=keep.pk)
    primaries.update(is_primary=False, updated_at=timezone.now())


def _promote(*, contact: Contact, membership: CompanyMembership) -> None:
    """Demote every other primary of the contact, then flag `membership` (contact already locked)."""
    _demote_primary(contact=contact, keep=membership)
    now = timezone.now()
    CompanyMembership.objects.filter(pk=membership.pk).update(is_primary=True, updated_at=now)
    membership.is_primary = True
    membership.updated_at = now


def contact_set_primary_company(*, contact: Contact, company: Company | None) -> CompanyMembership | None:
    """Make `company` the contact's primary company (the API's `companyId`).

    An existing membership at that company is promoted; otherwise a new membership is created
    as primary. The previous primary membership is kept, demoted. `None` only clears the primary
    flag: the memberships themselves stay, and `companyId` reads null afterwards.
    """
    if company is not None and company.entity_id != contact.entity_id:
        raise errors.Invalid("No company with that id exists in this entity.", field="company_id")
    with transaction.atomic():
        _lock_contact(contact)
        if company is None:
            _demote_primary(contact=contact)
            return None
        membership = CompanyMembership.objects.filter(contact_id=contact.pk, company_id=company.pk).first()
        if membership is None:
            _demote_primary(contact=contact)
            return _save_membership(
                CompanyMembership(entity_id=contact.entity_id, contact=contact, company=company, is_primary=True)
            )
        if not membership.is_primary:
            _promote(contact=contact, membership=membership)
        return membership


# --- memberships --------------------------------------------------------------------------------


def _ensure_company_free(*, contact: Contact, company: Company, exclude_id=None) -> None:
    taken = CompanyMembership.objects.filter(contact_id=contact.pk, company_id=company.pk).exclude(pk=exclude_id)
    ensure_unique(taken, message=f"This contact already has a membership at {company.name}.")


def _ensure_dates(*, start_date: date | None, end_date: date | None) -> None:
    if start_date and end_date and end_date < start_date:
        raise errors.Invalid("endDate must not be before startDate.", field="end_date")


def _save_membership(membership: CompanyMembership) -> CompanyMembership:
    # A violation is only reachable if the contact lock was bypassed; still answer the 409 it means.
    return save_unique(
        membership,
        recheck=lambda: _ensure_company_free(
            contact=membership.contact, company=membership.company, exclude_id=membership.pk
        ),
    )


def membership_create(
    *,
    contact: Contact,
    company: Company,
    title: str = "",
    is_primary: bool | None = None,
    start_date: date | None = None,
    end_date: date | None = None,
) -> CompanyMembership:
    """Add the contact to a company; one membership per company (409 with the existing id).

    `is_primary=None` (not given) makes the membership primary when the contact has no primary
    membership yet (its first membership, or after the primary one was removed or cleared);
    `True` promotes it and demotes the old primary; `False` is honoured.
    """
    if company.entity_id != contact.entity_id:
        raise errors.Invalid("No company with that id exists in this entity.", field="company_id")
    _ensure_dates(start_date=start_date, end_date=end_date)
    with transaction.atomic():
        _lock_contact(contact)
        before = _state(contact)
        _ensure_company_free(contact=contact, company=company)
        has_primary = CompanyMembership.objects.filter(contact_id=contact.pk, is_primary=True).exists()
        primary = (not has_primary) if is_primary is None else is_primary
        if primary and has_primary:
            _demote_primary(contact=contact)
        membership = CompanyMembership(
            entity_id=contact.entity_id,
            contact=contact,
            company=company,
            title=title,
            is_primary=primary,
            start_date=start_date,
            end_date=end_date,
        )
        membership = _save_membership(membership)
        _record_state(contact, before)
        return membership


def membership_update(*, membership: CompanyMembership, **fields: Any) -> CompanyMembership:
    """Apply a partial update to a membership.

    `is_primary=True` promotes it (the old primary is demoted first, under the contact lock);
    `False` on the primary leaves the contact without a primary company. Moving it to a company
    where the contact already has a membership is a 409.
    """
    contact = membership.contact
    company = fields.get("company", membership.company)
    if company.entity_id != contact.entity_id:
        raise errors.Invalid("No company with that id exists in this entity.", field="company_id")
    promote = fields.pop("is_primary", None)
    with transaction.atomic():
        _lock_contact(contact)
        try:
            # The row may have changed while we waited for the lock (another switch of the primary).
            membership.refresh_from_db()
        except CompanyMembership.DoesNotExist:
            raise errors.NotFound("Membership not found.") from None
        before = _state(contact)
        if company.pk != membership.company_id:
            _ensure_company_free(contact=contact, company=company, exclude_id=membership.pk)
        for name, value in fields.items():
            setattr(membership, name, value)
        _ensure_dates(start_date=membership.start_date, end_date=membership.end_date)
        if promote is True and not membership.is_primary:
            # Demote first, then let the save below carry the promotion.
            _demote_primary(contact=contact, keep=membership)
            membership.is_primary = True
        elif promote is False:
            membership.is_primary = False
        _save_membership(membership)
        _record_state(contact, before)
    return membership


def membership_delete(*, membership: CompanyMembership) -> None:
    """Remove a membership. Deleting the primary one leaves the contact without a primary company
    (`companyId` null) until one is chosen; no other membership is promoted behind the user's back.
    """
    with transaction.atomic():
        _lock_contact(membership.contact)
        before = _state(membership.contact)
        membership.delete()
        _record_state(membership.contact, before)


def contact_memberships_save(
    *, contact: Contact, memberships: list[CompanyMembership], deleted: list[CompanyMembership]
) -> None:
    """Save an edited set of a contact's memberships at once (the admin's inline formset).

    Deletions and demotions are written before the one promotion, under the contact lock, so a
    switch of the primary company in one form never trips the one-primary index. At most one of
    `memberships` may be primary (the formset validates it; a 400 otherwise).
    """
    primaries = [m for m in memberships if m.is_primary]
    touched = {m.pk for m in [*memberships, *deleted] if m.pk is not None}
    kept_primaries = CompanyMembership.objects.filter(contact_id=contact.pk, is_primary=True).exclude(pk__in=touched)
    if len(primaries) > 1 or (primaries and kept_primaries.exists()):
        raise errors.Invalid("A contact can have only one primary membership.", field="is_primary")
    for membership in memberships:
        if membership.company.entity_id != contact.entity_id:
            raise errors.Invalid("No company with that id exists in this entity.", field="company_id")
        _ensure_dates(start_date=membership.start_date, end_date=membership.end_date)
    with transaction.atomic():
        _lock_contact(contact)
        before = _state(contact)
        for membership in deleted:
            if membership.pk is not None:
                membership.delete()
        for membership in memberships:
            membership.entity_id = contact.entity_id
            membership.contact = contact
        for membership in memberships:
            if not membership.is_primary:
                membership.save()
        for membership in primaries:
            _demote_primary(contact=contact, keep=membership)
            membership.save()
        _record_state(contact, before)
