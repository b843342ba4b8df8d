"""Query expressions of contacts that the API, the filters and the pages share.

One definition each, so a contact's full name and its primary company read the same (and use the
same index) wherever a list or a search needs them.
"""

from __future__ import annotations

from django.db.models import CharField, Func, OuterRef, QuerySet, Subquery, TextField, UUIDField

from crm.models import CompanyMembership, Contact


class FullName(Func):
    """`first_name || ' ' || last_name`: the contact's full name as search and its index see it."""

    template = "(%(expressions)s)"
    arg_joiner = " || ' ' || "
    output_field = TextField()


def primary_company(field: str = "company_id") -> Subquery:
    """`field` of each contact row's primary membership (its company id by default), as one
    correlated subquery: a list costs the same number of queries at any page size."""
    # An explicit output field, so SQLite (the demo) hands back a UUID rather than hex text.
    output = UUIDField() if field == "company_id" else CharField()
    primary = CompanyMembership.objects.filter(contact_id=OuterRef("pk"), is_primary=True)
    return Subquery(primary.values(field)[:1], output_field=output)


def primary_company_id() -> Subquery:
    """The primary membership's company id of each contact row."""
    return primary_company("company_id")


def with_primary_company(contacts: QuerySet[Contact]) -> QuerySet[Contact]:
    """Each contact with `primary_company_id` and `primary_company_name`."""
    return contacts.annotate(
        primary_company_id=primary_company("company_id"), primary_company_name=primary_company("company__name")
    )
