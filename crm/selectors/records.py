"""Companies and contacts as the sales pages list and show them: keyset pages and bounded lists.

Lists are ordered as the API orders them (companies by name, id; contacts by last name, first
name, id) and paged by keyset (`crm.selectors.paging`), so a deep page costs what the first one
does. A detail page shows the first `limit` rows of each related list (contacts, leads,
activities), never the whole of a big company's history.
"""

from __future__ import annotations

from django.db.models import F, QuerySet

from crm.models import Activity, Company, CompanyMembership, Contact, Lead
from crm.selectors.contacts import with_primary_company
from crm.selectors.paging import KeysetPage, keyset_page

COMPANY_ORDER = ("name", "id")
CONTACT_ORDER = ("last_name", "first_name", "id")
ACTIVITY_ORDER = ("-occurred_at", "id")
LEAD_ORDER = ("-updated_at", "id")
PAGE_SIZE = 50
RELATED_LIMIT = 50


def company_list_page(
    companies: QuerySet[Company], *, after: tuple | None, size: int = PAGE_SIZE, search: bool = False
) -> KeysetPage:
    """A page of (already entity-scoped and filtered) companies, with their owner. `search`: the
    filter includes a text search (see `keyset_page`)."""
    return keyset_page(companies.select_related("owner"), order=COMPANY_ORDER, after=after, size=size, search=search)


def contact_list_page(
    contacts: QuerySet[Contact], *, after: tuple | None, size: int = PAGE_SIZE, search: bool = False
) -> KeysetPage:
    """A page of (already entity-scoped and filtered) contacts, with their primary company."""
    contacts = with_primary_company(contacts.select_related("owner"))
    return keyset_page(contacts, order=CONTACT_ORDER, after=after, size=size, search=search)


def _bounded(queryset: QuerySet, limit: int) -> tuple[list, bool]:
    rows = list(queryset[: limit + 1])
    return rows[:limit], len(rows) > limit


def company_contacts(*, company: Company, limit: int = RELATED_LIMIT) -> tuple[list[Contact], bool]:
    """The first contacts with a membership at the company, in list order, with that membership's
    title and primary flag; and whether there are more."""
    contacts = (
        Contact.objects.for_entity(company.entity_id)
        .filter(memberships__company=company)
        .annotate(membership_title=F("memberships__title"), membership_is_primary=F("memberships__is_primary"))
        .order_by(*CONTACT_ORDER)
    )
    return _bounded(contacts, limit)


def contact_memberships(*, contact: Contact, limit: int = RELATED_LIMIT) -> tuple[list[CompanyMembership], bool]:
    """The contact's memberships (primary first), with their companies."""
    memberships = (
        CompanyMembership.objects.for_entity(contact.entity_id)
        .filter(contact=contact)
        .select_related("company")
        .order_by("-is_primary", "created_at", "id")
    )
    return _bounded(memberships, limit)


def related_leads(*, entity, limit: int = RELATED_LIMIT, **relation) -> tuple[list[Lead], bool]:
    """The most recently updated leads of a company or contact (`company=` / `contact=`)."""
    leads = (
        Lead.objects.for_entity(entity)
        .filter(**relation)
        .select_related("stage", "owner", "company", "contact")
        .order_by(*LEAD_ORDER)
    )
    return _bounded(leads, limit)


def related_activities(*, entity, after: tuple | None = None, limit: int = RELATED_LIMIT, **relation) -> KeysetPage:
    """A page of a company's or contact's activities, newest first (`company=` / `contact=`)."""
    activities = Activity.objects.for_entity(entity).filter(**relation).select_related("assignee", "lead")
    return keyset_page(activities, order=ACTIVITY_ORDER, after=after, size=limit)
