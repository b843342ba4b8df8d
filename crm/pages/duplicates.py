"""`/crm/duplicates`: the pairs that look like duplicates, side by side with the differing fields
marked; pick the record that survives and, field by field, whose value to keep; merge or dismiss.
"Merge with…" on a contact's or a company's page searches for the other record and opens the
same comparison. Every write goes through `crm.services.merge` / `crm.services.duplicates`, the
services the API and the admin call; their refusals show as messages in the API's words.
"""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from axiomatic import errors
from axiomatic.pages import entity_page
from crm.models.duplicates import DuplicateKind
from crm.pages.common import cursor_decode, cursor_encode
from crm.selectors.duplicates import KINDS, compare, duplicate_page, merge_candidates, records
from crm.services.actors import Actor
from crm.services.duplicates import duplicates_dismiss
from crm.services.merge import company_merge, contact_merge, merged_into

PAGE_SIZE = 20
_KIND_PARAM = {"contacts": DuplicateKind.CONTACT, "companies": DuplicateKind.COMPANY}
_KIND_PATH = {kind: path for path, kind in _KIND_PARAM.items()}


def _kind(value: str | None) -> str:
    return _KIND_PARAM.get(value or "contacts", DuplicateKind.CONTACT)


def _uuid(value) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _list_url(request, kind: str) -> str:
    return f"{reverse('crm-duplicates')}?entityId={request.entity.pk}&kind={_KIND_PATH[kind]}"


def survivor_or_404(request, kind: str, record_id, lookup):
    """`lookup()` (a record page's 404-raising load); for a merged id, a redirect to the record it
    was merged into instead of the 404, so old links and bookmarks keep working."""
    try:
        return lookup()
    except Http404:
        survivor = merged_into(entity=request.entity, kind=kind, pk=record_id)
        if survivor is None:
            raise
        name = "crm-contact" if kind == DuplicateKind.CONTACT else "crm-company"
        messages.info(request, f"That {kind} was merged into this one.")
        return HttpResponseRedirect(f"{reverse(name, args=[survivor])}?entityId={request.entity.pk}")


@require_GET
@entity_page
def duplicates(request):
    kind = _kind(request.GET.get("kind"))
    after = cursor_decode(request.GET.get("cursor", ""), (float, uuid.UUID))
    comparisons, next_cursor = duplicate_page(entity=request.entity, kind=kind, after=after, limit=PAGE_SIZE)
    context = {
        "kind": kind,
        "kind_param": _KIND_PATH[kind],
        "comparisons": comparisons,
        "next_url": f"{_list_url(request, kind)}&cursor={cursor_encode(next_cursor)}" if next_cursor else "",
        "is_continuation": after is not None,
        "first_page_url": _list_url(request, kind),
    }
    return render(request, "crm/duplicates.html", context)


def _pair_or_404(request, kind: str, first_id, second_id):
    ids = [_uuid(first_id), _uuid(second_id)]
    if None in ids or ids[0] == ids[1]:
        raise Http404("Pick two different records.")
    loaded = records(request.entity, kind, ids)
    if len(loaded) != 2:
        raise Http404("No such record in this entity.")
    return loaded[ids[0]], loaded[ids[1]]


@require_GET
@entity_page
def duplicate_compare(request):
    """Two records chosen by hand ("Merge with…"), side by side like a listed pair."""
    kind = _kind(request.GET.get("kind"))
    first, second = _pair_or_404(request, kind, request.GET.get("a"), request.GET.get("b"))
    context = {"kind": kind, "kind_param": _KIND_PATH[kind], "comparison": compare(kind, first, second)}
    return render(request, "crm/duplicate_compare.html", context)


@require_GET
@entity_page
def merge_with(request, kind_path: str, record_id):
    """ "Merge with…": search the other record of the same kind."""
    kind = _KIND_PARAM.get(kind_path)
    if kind is None:
        raise Http404("Unknown kind.")
    record = records(request.entity, kind, [record_id]).get(record_id)
    if record is None:
        raise Http404("No such record in this entity.")
    q = request.GET.get("q", "")
    context = {
        "kind": kind,
        "kind_param": kind_path,
        "record": record,
        "q": q,
        "candidates": merge_candidates(entity=request.entity, kind=kind, record=record, q=q),
    }
    return render(request, "crm/merge_with.html", context)


@require_POST
@entity_page
def duplicate_merge(request):
    """Merge the pair posted: `a` and `b`, `survivor` (one of them), and `source.<field>` (the id
    whose value to keep for that field)."""
    kind = _kind(request.POST.get("kind"))
    first, second = _pair_or_404(request, kind, request.POST.get("a"), request.POST.get("b"))
    if request.POST.get("survivor") not in (str(first.pk), str(second.pk)):
        messages.error(request, "Pick the record that survives.")
        return HttpResponseRedirect(_list_url(request, kind))
    survivor, merged = (first, second) if request.POST["survivor"] == str(first.pk) else (second, first)
    fields_from = {}
    for key, value in request.POST.items():
        if key.startswith("source.") and value in (str(survivor.pk), str(merged.pk)):
            fields_from[key.removeprefix("source.")] = "merged" if value == str(merged.pk) else "survivor"
    merge = contact_merge if kind == DuplicateKind.CONTACT else company_merge
    target = {"contact" if kind == DuplicateKind.CONTACT else "company": survivor}
    try:
        result = merge(**target, merge_id=merged.pk, fields_from=fields_from, actor=Actor.from_request(request))
    except errors.DomainError as error:
        messages.error(request, error.message)
    else:
        moved = ", ".join(f"{n} {name}" for name, n in result.moved.items() if n) or "nothing else"
        messages.success(request, f"Merged {merged} into {result.survivor} (moved {moved}).")
        detail = "crm-contact" if kind == DuplicateKind.CONTACT else "crm-company"
        if request.POST.get("next") == "record":
            return HttpResponseRedirect(f"{reverse(detail, args=[survivor.pk])}?entityId={request.entity.pk}")
    return HttpResponseRedirect(_list_url(request, kind))


@require_POST
@entity_page
def duplicate_dismiss(request):
    kind = _kind(request.POST.get("kind"))
    first, second = _pair_or_404(request, kind, request.POST.get("a"), request.POST.get("b"))
    try:
        duplicates_dismiss(entity=request.entity, kind=kind, ids=[first.pk, second.pk])
    except errors.DomainError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"{first} and {second} will not be offered as duplicates again.")
    return HttpResponseRedirect(_list_url(request, kind))


__all__ = [
    "KINDS",
    "duplicate_compare",
    "duplicate_dismiss",
    "duplicate_merge",
    "duplicates",
    "merge_with",
    "survivor_or_404",
]
