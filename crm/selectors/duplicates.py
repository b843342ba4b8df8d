"""Reads for the duplicates page: a keyset page of pairs with both records, and the side-by-side
comparison of two records (which fields differ)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Model

from axiomatic.keyset import keyset_after, order_keys
from crm.models import Company, CompanyDuplicate, Contact, ContactDuplicate
from crm.models.duplicates import DuplicateKind
from crm.selectors.search import search_companies, search_contacts, search_words
from crm.services.merge import mergeable_fields

KINDS: dict[str, tuple[type[Model], type[Model]]] = {
    DuplicateKind.CONTACT: (Contact, ContactDuplicate),
    DuplicateKind.COMPANY: (Company, CompanyDuplicate),
}
PAGE_ORDER = ("-score", "id")
SEARCH_LIMIT = 20


@dataclass
class FieldRow:
    """One field of two records side by side."""

    name: str  # the API name, as fieldsFrom takes it
    label: str
    first: Any
    second: Any
    first_empty: bool
    second_empty: bool

    @property
    def differs(self) -> bool:
        return self.first != self.second


@dataclass
class Comparison:
    """Two records of one kind, field by field, and (for a listed pair) why they look alike."""

    kind: str
    first: Model
    second: Model
    rows: list[FieldRow] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    score: float | None = None
    pair_id: uuid.UUID | None = None


def _shown(record: Model, item) -> Any:
    if item.name == "owner":
        owner = getattr(record, "owner", None)
        return owner.display_name if owner else ""
    value = getattr(record, item.attname)
    return "" if value is None else value


def compare(kind: str, first: Model, second: Model, *, reasons=(), score=None, pair_id=None) -> Comparison:
    """The two records field by field (the fields a merge may fill)."""
    rows = []
    for api, item in mergeable_fields(type(first)).items():
        a, b = _shown(first, item), _shown(second, item)
        rows.append(
            FieldRow(
                name=api,
                label=str(item.verbose_name).capitalize(),
                first=a,
                second=b,
                first_empty=a in ("", None, {}, []),
                second_empty=b in ("", None, {}, []),
            )
        )
    return Comparison(kind, first, second, rows, list(reasons), score, pair_id)


def records(entity, kind: str, ids) -> dict:
    model, _ = KINDS[kind]
    return {row.pk: row for row in model.objects.for_entity(entity).select_related("owner").filter(pk__in=list(ids))}


def duplicate_page(*, entity, kind: str, after: tuple | None, limit: int) -> tuple[list[Comparison], tuple | None]:
    """One page of pairs (strongest first) with both records: two queries whatever the page size.
    Returns the comparisons and the cursor of the next page (None on the last)."""
    _, pair_model = KINDS[kind]
    pairs = pair_model.objects.for_entity(entity).order_by(*PAGE_ORDER)
    if after is not None:
        pairs = keyset_after(pairs, order_keys(PAGE_ORDER), list(after))
    page = list(pairs[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    loaded = records(entity, kind, {pk for pair in page for pk in pair.ids})
    comparisons = [
        compare(
            kind, loaded[pair.first_id], loaded[pair.second_id], reasons=pair.reasons, score=pair.score, pair_id=pair.pk
        )
        for pair in page
        if pair.first_id in loaded and pair.second_id in loaded
    ]
    cursor = (page[-1].score, page[-1].pk) if more and page else None
    return comparisons, cursor


def merge_candidates(*, entity, kind: str, record: Model, q: str) -> list[Model]:
    """Records of the same kind matching the words of `q` (as the search page matches them), for
    "Merge with…": at most `SEARCH_LIMIT`, the record itself left out."""
    words = search_words(q or "")
    if not words:
        return []
    matches = search_contacts if kind == DuplicateKind.CONTACT else search_companies
    return list(matches(entity=entity, words=words).exclude(pk=record.pk)[:SEARCH_LIMIT])
