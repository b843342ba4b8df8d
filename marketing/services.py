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

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from axiomatic import changes, errors
from axiomatic.db import is_postgres
from axiomatic.models import Entity
from axiomatic.uniqueness import ensure_unique, save_unique
from crm.models import Company, CompanyMembership, Contact, Lead
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
    added_ids: list[UUID] = field(default_factory=list, repr=False)  # the new member rows (change feed)


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


@transaction.atomic
def list_create(*, entity: Entity, name: str, description: str = "") -> MarketingList:
    """Create a list; a name already used in the entity (case-insensitively) is a 409 with its id."""
    _ensure_name_free(entity_id=entity.pk, name=name)
    marketing_list = _save_list(MarketingList(entity=entity, name=name, description=description))
    marketing_list.member_count = 0
    changes.record_created(marketing_list)
    return marketing_list


@transaction.atomic
def list_update(*, marketing_list: MarketingList, **fields) -> MarketingList:
    """Apply a partial update (name, description); renaming onto another list's name is a 409."""
    before = changes.snapshot_fresh(marketing_list, lock=True)
    new_name = fields.get("name")
    if new_name is not None and new_name.lower() != marketing_list.name.lower():
        _ensure_name_free(entity_id=marketing_list.entity_id, name=new_name, exclude_id=marketing_list.pk)
    for name, value in fields.items():
        setattr(marketing_list, name, value)
    marketing_list = _save_list(marketing_list)
    changes.record_updated(marketing_list, before)
    return marketing_list


def list_delete(*, marketing_list: MarketingList) -> None:
    """Delete a list with all its member rows (opt-outs included); records each deletion."""
    changes.delete_recorded(marketing_list)


# --- members -------------------------------------------------------------------------------------


def member_unsubscribe(*, member: MarketingListMember) -> MarketingListMember:
    """Mark a member unsubscribed, keeping the row: the row is what blocks later re-adds.

    Idempotent: unsubscribing twice keeps the first `unsubscribed_at`.
    """
    if member.status != MemberStatus.UNSUBSCRIBED:
        with transaction.atomic():
            before = changes.snapshot(member)
            member.status = MemberStatus.UNSUBSCRIBED
            member.unsubscribed_at = timezone.now()
            member.save(update_fields=["status", "unsubscribed_at", "updated_at"])
            changes.record_updated(member, before)
    return member


def member_delete(*, member: MarketingListMember) -> None:
    """Remove a member row (this forgets an opt-out too); records `marketing_list_member.deleted`."""
    changes.delete_recorded(member)


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
    - One bulk operation. On PostgreSQL the list row is locked, then one statement resolves every
      id (contacts, companies' memberships, leads' contacts), classifies each contact against the
      list's existing members and writes the new ones with `INSERT ... SELECT ... ON CONFLICT DO
      NOTHING`: two queries whatever the number of ids, and no contact row travels to Python.
      Elsewhere (SQLite, the demo) ids are resolved with one `id__in` query per kind, existing
      members with one query, and new rows with one bulk insert.
    - The list row is locked (`SELECT ... FOR UPDATE`) so concurrent adds to the same list run one
      after the other; the check of existing members is therefore exact and `added` is true.
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
    contact_ids = _unique(contact_ids)
    company_ids = _unique(company_ids)
    lead_ids = _unique(lead_ids)
    locked = (
        MarketingList.objects.select_for_update().filter(pk=marketing_list.pk).values_list("pk", flat=True).order_by()
    )
    if locked.first() is None:
        raise errors.NotFound("Marketing list not found.")  # deleted since the caller loaded it
    add = _add_in_sql if is_postgres() else _add_in_python
    result = add(
        marketing_list=marketing_list,
        contact_ids=contact_ids,
        company_ids=company_ids,
        lead_ids=lead_ids,
        source=source,
    )
    if result.added_ids:  # `marketing_list_member.created` for each new row, in one insert
        added = MarketingListMember.objects.filter(pk__in=result.added_ids).order_by("added_at", "id")
        changes.record(changes.creations(added))
    return result


def _tables() -> dict[str, str]:
    return {
        "contact": Contact._meta.db_table,
        "company": Company._meta.db_table,
        "membership": CompanyMembership._meta.db_table,
        "lead": Lead._meta.db_table,
        "member": MarketingListMember._meta.db_table,
    }


# Paths: 1 contacts, 2 companies, 3 leads. A contact's place is its first (path, position given,
# membership created, membership contact) — the order the Python path walks them in.
_ADD_SQL = """
WITH reached AS (
    SELECT 1 AS path, g.ord, NULL::timestamptz AS m_created, NULL::uuid AS m_contact, c.id AS contact_id, c.email
      FROM unnest(%(contacts)s::uuid[]) WITH ORDINALITY AS g(id, ord)
      JOIN {contact} c ON c.id = g.id AND c.entity_id = %(entity)s
    UNION ALL
    SELECT 2, g.ord, m.created_at, m.contact_id, c.id, c.email
      FROM unnest(%(companies)s::uuid[]) WITH ORDINALITY AS g(id, ord)
      JOIN {company} co ON co.id = g.id AND co.entity_id = %(entity)s
      JOIN {membership} m ON m.company_id = co.id
      JOIN {contact} c ON c.id = m.contact_id
    UNION ALL
    SELECT 3, g.ord, NULL, NULL, c.id, c.email
      FROM unnest(%(leads)s::uuid[]) WITH ORDINALITY AS g(id, ord)
      JOIN {lead} l ON l.id = g.id AND l.entity_id = %(entity)s
      JOIN {contact} c ON c.id = l.contact_id
),
not_found AS (
    SELECT 1 AS path, g.ord, g.id FROM unnest(%(contacts)s::uuid[]) WITH ORDINALITY AS g(id, ord)
     WHERE NOT EXISTS (SELECT 1 FROM {contact} c WHERE c.id = g.id AND c.entity_id = %(entity)s)
    UNION ALL
    SELECT 2, g.ord, g.id FROM unnest(%(companies)s::uuid[]) WITH ORDINALITY AS g(id, ord)
     WHERE NOT EXISTS (SELECT 1 FROM {company} co WHERE co.id = g.id AND co.entity_id = %(entity)s)
    UNION ALL
    SELECT 3, g.ord, g.id FROM unnest(%(leads)s::uuid[]) WITH ORDINALITY AS g(id, ord)
     WHERE NOT EXISTS (
        SELECT 1 FROM {lead} l WHERE l.id = g.id AND l.entity_id = %(entity)s AND l.contact_id IS NOT NULL)
),
candidates AS (
    SELECT DISTINCT ON (contact_id) contact_id, lower(coalesce(email, '')) AS email, path, ord, m_created, m_contact
      FROM reached
     ORDER BY contact_id, path, ord, m_created, m_contact
),
members AS (
    -- This list's rows for the candidates, by contact or by address. The OR keeps both IN lists
    -- hashed sub-plans over the list's rows (it cannot become a join), so a bad row estimate for
    -- the candidates can never turn this into a nested loop of candidates x members.
    SELECT m.id, m.contact_id, lower(m.email) AS email, m.status
      FROM {member} m
     WHERE m.marketing_list_id = %(list)s
       AND (m.contact_id IN (SELECT contact_id FROM candidates)
            OR m.email IN (SELECT email FROM candidates WHERE email <> ''))
),
tagged AS (  -- candidates (kind 0) beside the member rows (kind 1); statuses spread by window, not joins
    SELECT 0 AS kind, contact_id, email, path, ord, m_created, m_contact, NULL::text AS status FROM candidates
    UNION ALL
    SELECT 1, contact_id, email, NULL, NULL, NULL, NULL, status FROM members
),
by_contact AS (
    SELECT *, max(status) FILTER (WHERE kind = 1) OVER (PARTITION BY contact_id) AS contact_status FROM tagged
),
by_email AS (  -- an opt-out of an address wins over a subscription of the same address
    SELECT *,
           CASE WHEN bool_or(status = %(unsubscribed)s) FILTER (WHERE kind = 1) OVER (PARTITION BY email)
                THEN %(unsubscribed)s
                WHEN bool_or(true) FILTER (WHERE kind = 1) OVER (PARTITION BY email) THEN %(subscribed)s
           END AS email_status
      FROM by_contact
),
classified AS (
    SELECT contact_id, email, path, ord, m_created, m_contact,
           coalesce(contact_status, CASE WHEN email <> '' THEN email_status END) AS status
      FROM by_email WHERE kind = 0
),
to_add AS (  -- two contacts, one address: the first adds it, the next finds it on the list
    SELECT contact_id, email,
           row_number() OVER (PARTITION BY email ORDER BY path, ord, m_created, m_contact) AS nth
      FROM classified WHERE status IS NULL AND email <> ''
),
inserted AS (
    INSERT INTO {member} (id, entity_id, created_at, updated_at, marketing_list_id, contact_id, email, status,
                          source, added_at, unsubscribed_at)
    SELECT gen_random_uuid(), %(entity)s, %(now)s, %(now)s, %(list)s, contact_id, email, %(subscribed)s,
           %(source)s, %(now)s, NULL
      FROM to_add WHERE nth = 1
    ON CONFLICT DO NOTHING
    RETURNING id
)
SELECT 0 AS section, path, ord, NULL::timestamptz AS m_created, NULL::uuid AS m_contact, id, %(not_found)s AS reason,
       0::bigint AS n
  FROM not_found
UNION ALL
SELECT 1, path, ord, m_created, m_contact, contact_id,
       CASE WHEN status = %(unsubscribed)s THEN %(unsubscribed)s ELSE %(no_email)s END, 0
  FROM classified WHERE status = %(unsubscribed)s OR (status IS NULL AND email = '')
UNION ALL
SELECT 2, NULL, NULL, NULL, NULL, NULL, 'added', (SELECT count(*) FROM inserted)
UNION ALL
SELECT 3, NULL, NULL, NULL, NULL, NULL, 'already',
       (SELECT count(*) FROM classified WHERE status = %(subscribed)s) + (SELECT count(*) FROM to_add WHERE nth > 1)
UNION ALL
SELECT 4, NULL, NULL, NULL, NULL, id, 'inserted', 0 FROM inserted
ORDER BY section, path, ord, m_created, m_contact
"""


def _add_in_sql(
    *, marketing_list: MarketingList, contact_ids: list, company_ids: list, lead_ids: list, source: str
) -> AddResult:
    """The PostgreSQL path: everything in one statement (see `list_add_contacts`)."""
    params = {
        "entity": marketing_list.entity_id,
        "list": marketing_list.pk,
        "contacts": contact_ids,
        "companies": company_ids,
        "leads": lead_ids,
        "now": timezone.now(),
        "source": source,
        "subscribed": MemberStatus.SUBSCRIBED.value,
        "unsubscribed": MemberStatus.UNSUBSCRIBED.value,
        "no_email": SkipReason.NO_EMAIL,
        "not_found": SkipReason.NOT_FOUND,
    }
    with connection.cursor() as cursor:
        cursor.execute(_ADD_SQL.format(**_tables()), params)
        rows = cursor.fetchall()
    result = AddResult(list_id=marketing_list.pk)
    not_found: list[UUID] = []
    for section, _path, _ord, _created, _contact, row_id, reason, n in rows:
        if section == 0:
            not_found.append(row_id)
        elif section == 1:
            result.skipped.append(Skipped(id=row_id, reason=reason))
        elif section == 2:
            result.added = int(n)
        elif section == 3:
            result.already_on_list = int(n)
        else:
            result.added_ids.append(row_id)
    # An id sent in two lists (or twice) is reported once, before the contacts skipped.
    result.skipped[:0] = [Skipped(id=i, reason=SkipReason.NOT_FOUND) for i in dict.fromkeys(not_found)]
    return result


def _add_in_python(
    *, marketing_list: MarketingList, contact_ids: list, company_ids: list, lead_ids: list, source: str
) -> AddResult:
    """The portable path (SQLite): resolve in Python, then one bulk insert."""
    entity_id = marketing_list.entity_id
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
    result.added_ids = [row.pk for row in new_rows]
    return result
