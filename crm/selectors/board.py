"""The pipeline board's reads: which leads it shows, each column's figures and cards.

The board costs the same few queries, and about the same time, for 5 leads or 500,000:

- Counts and per-currency totals come from the maintained pipeline figures (a few rows per
  stage; `crm.models.PipelineFigure`) unless the title filter is on, which only the leads
  themselves can answer (one aggregate query then).
- The first cards of every column: each column's newest 50 ids read through the
  (entity, stage, updated_at, id) index, all columns in one `UNION ALL`, then those leads with
  their company, contact and owner in one more query. Where the database cannot put a LIMIT
  inside a UNION (SQLite, the demo) one windowed query ranks the leads instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from django.db import connection
from django.db.models import Count, F, OuterRef, QuerySet, Subquery, Sum, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from axiomatic.counters import counters_supported
from axiomatic.models import Entity
from crm.choices import ActivityDirection
from crm.models import Activity, Lead, PipelineFigure, PipelineStage
from crm.selectors.owners import UNASSIGNED, OwnerSelector, owner_q

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


@dataclass(frozen=True)
class BoardSelection:
    """Which of the entity's leads the board shows: by owner and a substring of the title."""

    entity: Entity
    owner: OwnerSelector = None
    title_contains: str = ""

    def leads(self) -> QuerySet[Lead]:
        leads = Lead.objects.for_entity(self.entity).filter(owner_q(self.owner, "owner"))
        return leads.filter(title__icontains=self.title_contains) if self.title_contains else leads


def ago(moment, now) -> str:
    """A short "how long ago" for cards ("5 min ago", "2 h ago", "3 d ago")."""
    seconds = max((now - moment).total_seconds(), 0)
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 48 * 3600:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} d ago"


def _with_days_in_stage(leads: list[Lead]) -> list[Lead]:
    now = timezone.now()
    for lead in leads:
        since = lead.stage_changed_at or lead.created_at
        lead.days_in_stage = max((now - since).days, 0)
        last_reply_at = getattr(lead, "last_reply_at", None)
        lead.replied_ago = ago(last_reply_at, now) if last_reply_at else ""
    return leads


def with_last_reply(leads: QuerySet[Lead]) -> QuerySet[Lead]:
    """Each lead's newest received email (`last_reply_at`), for "replied 2 h ago": one index probe
    per lead inside the same query (activity_lead_inbound_idx)."""
    newest = (
        Activity.objects.filter(lead=OuterRef("pk"), direction=ActivityDirection.INBOUND)
        .order_by("-occurred_at")
        .values("occurred_at")[:1]
    )
    return leads.annotate(last_reply_at=Subquery(newest))


def _cards(leads: QuerySet[Lead]) -> QuerySet[Lead]:
    return with_last_reply(leads.select_related("company", "contact", "owner"))


def _totals(selection: BoardSelection, stage_ids: list) -> list[dict]:
    """Rows of (stage_id, currency, n, amount): from the figures, or from the leads when the
    title filter is on (or on SQLite, which keeps no figures)."""
    if selection.title_contains or not counters_supported():
        return list(
            selection.leads()
            .filter(stage__in=stage_ids)
            .order_by()
            .values("stage_id", "currency")
            .annotate(n=Count("id"), amount=Sum("value"))
            .order_by("stage_id", "currency")
        )
    figures = PipelineFigure.objects.filter(entity_id=selection.entity.pk, stage_id__in=stage_ids)
    if selection.owner == UNASSIGNED:
        figures = figures.filter(owner_id__isnull=True)
    elif selection.owner is not None:
        figures = figures.filter(owner_id=selection.owner)
    rows = (
        figures.order_by()
        .values("stage_id", "currency")
        .annotate(n=Sum("lead_count"), valued=Sum("valued_count"), amount=Sum("value_sum"))
        .order_by("stage_id", "currency")
    )
    # A currency none of whose leads has a value has no total (as SUM over the leads says).
    return [{**row, "amount": row["amount"] if row["valued"] else None} for row in rows if row["n"]]


def _first_cards(leads: QuerySet[Lead], stage_ids: list) -> list[Lead]:
    """The first page of cards of every column in `stage_ids`, in card order."""
    ordered = leads.order_by(*CARD_ORDER)
    if not connection.features.supports_slicing_ordering_in_compound:
        ranked = _cards(leads.filter(stage__in=stage_ids)).annotate(
            board_rank=Window(
                RowNumber(), partition_by=[F("stage_id")], order_by=[F("updated_at").desc(), F("id").asc()]
            )
        )
        return list(ranked.filter(board_rank__lte=COLUMN_PAGE_SIZE).order_by(*CARD_ORDER))
    per_stage = [
        ordered.filter(stage_id=stage_id).values_list("pk", flat=True)[:COLUMN_PAGE_SIZE] for stage_id in stage_ids
    ]
    ids = list(per_stage[0].union(*per_stage[1:], all=True))
    return list(_cards(leads.filter(pk__in=ids)).order_by(*CARD_ORDER)) if ids else []


def board_columns(*, selection: BoardSelection, stages: list[PipelineStage]) -> list[Column]:
    """Columns for `stages`: counts and totals, and the first cards (see the module docstring)."""
    columns = {stage.pk: Column(stage=stage) for stage in stages}
    for row in _totals(selection, list(columns)):
        column = columns[row["stage_id"]]
        column.count += row["n"]
        if row["amount"] is not None:
            column.totals.append((row["currency"], row["amount"]))
    non_empty = [pk for pk, column in columns.items() if column.count]
    if non_empty:
        for lead in _with_days_in_stage(_first_cards(selection.leads(), non_empty)):
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
