"""The list pages' shared mechanics: the API's filters, keyset "load more", the rows partial.

A list reads its filters with the API's own FilterSet (`CompanyFilter`, `ContactFilter`), so the
parameters (`q`, `role`, `status`, `ownerUserId`, `companyId`, `email`), their meaning and their
error messages are the API's. Rows come a page at a time after a cursor (`after`), never with a
COUNT(*) of the entity: the page knows there is more by reading one row beyond it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from django.db.models import QuerySet
from django.shortcuts import render

from crm.pages.common import cursor_decode, cursor_encode
from crm.selectors.paging import KeysetPage


@dataclass(frozen=True)
class ListSpec:
    path: str  # the page's path, e.g. /crm/companies
    filterset_class: type
    filter_names: tuple[str, ...]
    cursor_kinds: Sequence[Callable[[str], object]]
    page: Callable[..., KeysetPage]  # (queryset, after=..., search=...) -> KeysetPage
    template: str
    rows_template: str


def _filter_data(request, names: tuple[str, ...]) -> dict[str, str]:
    data = {name: request.GET[name] for name in names if request.GET.get(name, "") != ""}
    # Custom field filters (`cf.<key>`, `cf.<key>.gte`, ...): as many as the entity has fields.
    data.update({name: value for name, value in request.GET.items() if name.startswith("cf.") and value != ""})
    return data


def render_list(request, spec: ListSpec, queryset: QuerySet, extra: dict | None = None):
    """The full page, or (htmx "load more") only the next rows; 400 with the API's messages for
    an invalid filter value."""
    data = _filter_data(request, spec.filter_names)
    for key, value in data.items():
        if "\x00" in value:  # PostgreSQL text cannot hold NUL; the API refuses it too
            data[key] = value.replace("\x00", "")
    filterset = spec.filterset_class(data=data, queryset=queryset, request=request)
    filter_errors = (
        [] if filterset.is_valid() else [f"{name}: {' '.join(messages)}" for name, messages in filterset.errors.items()]
    )
    after = cursor_decode(request.GET.get("after", ""), spec.cursor_kinds)
    searching = bool(data.get("q"))  # a text search: its matches may be sorted (axiomatic.ordering)
    page = (
        KeysetPage(rows=[], next_after=None)
        if filter_errors
        else spec.page(filterset.qs, after=after, search=searching)
    )
    base_query = {"entityId": str(request.entity.pk), **data}
    context = {
        "rows": page.rows,
        "has_more": page.has_more,
        "next_url": f"{spec.path}?{urlencode({**base_query, 'after': cursor_encode(page.next_after)})}"
        if page.has_more
        else "",
        "filters": data,
        "filter_errors": filter_errors,
        "is_continuation": after is not None,
        "first_page_url": f"{spec.path}?{urlencode(base_query)}",
        **(extra or {}),
    }
    if request.htmx and after is not None:
        return render(request, spec.rows_template, context)
    return render(request, spec.template, context, status=400 if filter_errors else 200)
