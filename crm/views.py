"""Board and lead pages (server-rendered; htmx partials for columns, "load more" and the timeline).

These views only read. Every write (moving a lead, creating one, logging an activity) goes from
the page's JavaScript to the JSON API with the session, so the board and API clients share one
service and one set of rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import urlencode

from django.db.models import Count, F, QuerySet, Sum, Window
from django.db.models.functions import RowNumber
from django.http import Http404
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_GET

from axiomatic.pages import entity_page
from crm.choices import ActivityType, StageKind
from crm.models import Lead, LeadEvent, PipelineStage

COLUMN_PAGE_SIZE = 50
TIMELINE_PAGE_SIZE = 50
MAX_PAGE = 1_000_000  # beyond any real data; keeps OFFSET inside PostgreSQL's bigint
OWNER_FILTERS = (("", "Everyone"), ("me", "Me"), ("unassigned", "Unassigned"))
CARD_ORDER = ("-updated_at", "id")


@dataclass
class BoardFilters:
    """The board's filters, read from the query string (unknown owner values mean everyone)."""

    owner: str = ""
    q: str = ""

    @classmethod
    def from_request(cls, request) -> BoardFilters:
        owner = request.GET.get("owner", "")
        return cls(
            owner=owner if owner in dict(OWNER_FILTERS) else "",
            q=request.GET.get("q", "").replace("\x00", "").strip()[:200],  # PostgreSQL text cannot hold NUL
        )

    def apply(self, leads: QuerySet, user) -> QuerySet:
        if self.owner == "me":
            leads = leads.filter(owner=user)
        elif self.owner == "unassigned":
            leads = leads.filter(owner__isnull=True)
        if self.q:
            leads = leads.filter(title__icontains=self.q)
        return leads

    @property
    def query_string(self) -> str:
        return urlencode({k: v for k, v in (("owner", self.owner), ("q", self.q)) if v})


@dataclass
class Column:
    stage: PipelineStage
    count: int = 0
    totals: list[tuple[str, Decimal]] = field(default_factory=list)
    cards: list[Lead] = field(default_factory=list)

    @property
    def has_more(self) -> bool:
        return self.count > len(self.cards)


def _filtered_leads(request, filters: BoardFilters) -> QuerySet:
    return filters.apply(Lead.objects.for_entity(request.entity), request.user)


def _with_days_in_stage(leads: list[Lead]) -> list[Lead]:
    now = timezone.now()
    for lead in leads:
        since = lead.stage_changed_at or lead.created_at
        lead.days_in_stage = max((now - since).days, 0)
    return leads


def _card_query(leads: QuerySet) -> QuerySet:
    return leads.select_related("company", "contact", "owner")


def _columns(leads: QuerySet, stages: list[PipelineStage]) -> list[Column]:
    """Columns for `stages`: counts and per-currency totals in one aggregate query, the first
    page of every column's cards in one windowed query."""
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
            _card_query(leads.filter(stage__in=non_empty))
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


def _stages(request) -> list[PipelineStage]:
    return list(PipelineStage.objects.for_entity(request.entity).order_by("sort_order", "id"))


@require_GET
@entity_page
def board(request):
    """`/crm/board`: one column per stage, in order, with counts, totals and the first cards."""
    filters = BoardFilters.from_request(request)
    stages = _stages(request)
    context = {
        "stages": stages,
        "columns": _columns(_filtered_leads(request, filters), stages),
        "filters": filters,
        "owner_filters": OWNER_FILTERS,
        "open_stages": [s for s in stages if s.kind == StageKind.OPEN],
    }
    return render(request, "crm/board.html", context)


def _stage_or_404(stages: list[PipelineStage], stage_id) -> PipelineStage:
    stage = next((s for s in stages if s.pk == stage_id), None)
    if stage is None:
        raise Http404("No such stage.")
    return stage


@require_GET
@entity_page
def board_column(request, stage_id):
    """htmx partial: one column, re-rendered after a card moved in or out of it."""
    filters = BoardFilters.from_request(request)
    stages = _stages(request)
    stage = _stage_or_404(stages, stage_id)
    (column,) = _columns(_filtered_leads(request, filters), [stage])
    return render(request, "crm/_column.html", {"column": column, "stages": stages, "filters": filters})


@require_GET
@entity_page
def board_column_cards(request, stage_id):
    """htmx partial: the next page of one column's cards ("Load more")."""
    filters = BoardFilters.from_request(request)
    stages = _stages(request)
    stage = _stage_or_404(stages, stage_id)
    try:
        page = min(max(int(request.GET.get("page", "2")), 1), MAX_PAGE)
    except ValueError:
        page = 2
    offset = (page - 1) * COLUMN_PAGE_SIZE
    leads = _card_query(_filtered_leads(request, filters).filter(stage=stage)).order_by(*CARD_ORDER)
    cards = _with_days_in_stage(list(leads[offset : offset + COLUMN_PAGE_SIZE + 1]))
    context = {
        "cards": cards[:COLUMN_PAGE_SIZE],
        "has_more": len(cards) > COLUMN_PAGE_SIZE,
        "next_page": page + 1,
        "stage": stage,
        "stages": stages,
        "filters": filters,
    }
    return render(request, "crm/_cards.html", context)


def _timeline_page(request, lead: Lead, page: int) -> dict:
    offset = (page - 1) * TIMELINE_PAGE_SIZE
    events = list(
        LeadEvent.objects.for_entity(request.entity)
        .filter(lead=lead)
        .order_by("-occurred_at", "-id")[offset : offset + TIMELINE_PAGE_SIZE + 1]
    )
    return {
        "lead": lead,
        "events": events[:TIMELINE_PAGE_SIZE],
        "has_more": len(events) > TIMELINE_PAGE_SIZE,
        "next_page": page + 1,
    }


def _lead_or_404(request, lead_id) -> Lead:
    leads = Lead.objects.for_entity(request.entity).select_related("stage", "company", "contact", "owner")
    return get_object_or_404(leads, pk=lead_id)


@require_GET
@entity_page
def lead_detail(request, lead_id):
    """`/crm/leads/{id}`: the lead's fields, its timeline (newest first) and a log-activity form."""
    lead = _lead_or_404(request, lead_id)
    _with_days_in_stage([lead])
    context = {
        **_timeline_page(request, lead, 1),
        "stages": _stages(request),
        "activity_types": ActivityType.choices,
    }
    return render(request, "crm/lead.html", context)


@require_GET
@entity_page
def lead_timeline(request, lead_id):
    """htmx partial: a page of the timeline (page 1 after logging an activity, later pages on demand)."""
    lead = _lead_or_404(request, lead_id)
    try:
        page = min(max(int(request.GET.get("page", "1")), 1), MAX_PAGE)
    except ValueError:
        page = 1
    return render(request, "crm/_timeline.html", _timeline_page(request, lead, page))
