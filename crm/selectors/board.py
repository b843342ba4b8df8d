"""The pipeline board's reads: which leads it shows, each column's figures and cards.

One aggregate query gives every column's count and per-currency totals, one windowed query the
first page of every column's cards, so the board costs the same number of queries for 5 leads or
500,000.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Count, F, QuerySet, Sum, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from axiomatic.models import Entity
from crm.models import Lead, PipelineStage
from crm.selectors.owners import OwnerSelector, owner_q

COLUMN_PAGE_SIZE = 50
CARD_ORDER = ("-updated_at", "id")


@dataclass
class Column:
    """One stage of the board: how many leads, their totals per currency, the first cards."""

    stage: PipelineStage
    count: int = 0
    totals: list[tuple[str, Decimal]] = field(default_factory=list)
    cards: list[Lead] = field(default_factory=list)

    @property
    def has_more(self) -> bool:
        return self.count > len(self.cards)


def board_leads(*, entity: Entity, owner: OwnerSelector = None, title_contains: str = "") -> QuerySet[Lead]:
    """The entity's leads the board shows, by owner and a substring of the title."""
    leads = Lead.objects.for_entity(entity).filter(owner_q(owner, "owner"))
    return leads.filter(title__icontains=title_contains) if title_contains else leads


def _with_days_in_stage(leads: list[Lead]) -> list[Lead]:
    now = timezone.now()
    for lead in leads:
        since = lead.stage_changed_at or lead.created_at
        lead.days_in_stage = max((now - since).days, 0)
    return leads


def _cards(leads: QuerySet[Lead]) -> QuerySet[Lead]:
    return leads.select_related("company", "contact", "owner")


def board_columns(*, leads: QuerySet[Lead], stages: list[PipelineStage]) -> list[Column]:
    """Columns for `stages`: counts and totals in one aggregate query, first cards in one more."""
    columns = {stage.pk: Column(stage=stage) for stage in stages}
    totals = (
        leads.filter(stage__in=list(columns))
        .order_by()
        .values("stage_id", "currency")
        .annotate(n=Count("id"), amount=Sum("value"))
        .order_by("stage_id", "currency")
    )
    for row in totals:
        column = columns[row["stage_id"]]
        column.count += row["n"]
        if row["amount"] is not None:
            column.totals.append((row["currency"], row["amount"]))
    non_empty = [pk for pk, column in columns.items() if column.count]
    if non_empty:
        ranked = (
            _cards(leads.filter(stage__in=non_empty))
            .annotate(
                board_rank=Window(
                    RowNumber(), partition_by=[F("stage_id")], order_by=[F("updated_at").desc(), F("id").asc()]
                )
            )
            .filter(board_rank__lte=COLUMN_PAGE_SIZE)
            .order_by(*CARD_ORDER)
        )
        for lead in _with_days_in_stage(list(ranked)):
            columns[lead.stage_id].cards.append(lead)
    return list(columns.values())


def board_column_cards(*, leads: QuerySet[Lead], stage: PipelineStage, page: int) -> tuple[list[Lead], bool]:
    """One page of a column's cards ("load more") and whether another page follows."""
    offset = (page - 1) * COLUMN_PAGE_SIZE
    ordered = _cards(leads.filter(stage=stage)).order_by(*CARD_ORDER)
    cards = _with_days_in_stage(list(ordered[offset : offset + COLUMN_PAGE_SIZE + 1]))
    return cards[:COLUMN_PAGE_SIZE], len(cards) > COLUMN_PAGE_SIZE


def lead_days_in_stage(lead: Lead) -> Lead:
    """The lead with `days_in_stage` set, as the board's cards have it."""
    return _with_days_in_stage([lead])[0]
