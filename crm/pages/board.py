"""Board and lead pages (server-rendered; htmx partials for columns, "load more" and the timeline).

These views only read (on the streaming replica when one is configured: `axiomatic.replica`).
Every write (moving a lead, creating one, logging an activity) goes from the page's JavaScript to
the JSON API with the session, so the board and API clients share one service and one set of rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from django.http import Http404
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from axiomatic.pages import entity_page
from axiomatic.replica import reads_from_replica
from crm.choices import ActivityType, StageKind
from crm.models import Lead, PipelineStage
from crm.selectors import board as board_selectors
from crm.selectors.board import BoardSelection, board_columns, lead_days_in_stage, with_last_reply
from crm.selectors.owners import UNASSIGNED
from crm.selectors.pipeline import stages_in_order
from crm.selectors.timeline import lead_timeline as timeline_of

TIMELINE_PAGE_SIZE = 50
MAX_PAGE = 1_000_000  # beyond any real data; keeps OFFSET inside PostgreSQL's bigint
OWNER_FILTERS = (("", "Everyone"), ("me", "Me"), ("unassigned", "Unassigned"))


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

    def selection(self, request) -> BoardSelection:
        owner = {"": None, "me": request.user.pk, UNASSIGNED: UNASSIGNED}[self.owner]
        return BoardSelection(entity=request.entity, owner=owner, title_contains=self.q)

    @property
    def query_string(self) -> str:
        return urlencode({k: v for k, v in (("owner", self.owner), ("q", self.q)) if v})


def _stages(request) -> list[PipelineStage]:
    return list(stages_in_order(entity=request.entity))


@require_GET
@entity_page
@reads_from_replica
def board(request):
    """`/crm/board`: one column per stage, in order, with counts, totals and the first cards."""
    filters = BoardFilters.from_request(request)
    stages = _stages(request)
    context = {
        "stages": stages,
        "columns": board_columns(selection=filters.selection(request), stages=stages),
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
@reads_from_replica
def board_column(request, stage_id):
    """htmx partial: one column, re-rendered after a card moved in or out of it."""
    filters = BoardFilters.from_request(request)
    stages = _stages(request)
    stage = _stage_or_404(stages, stage_id)
    (column,) = board_columns(selection=filters.selection(request), stages=[stage])
    return render(request, "crm/_column.html", {"column": column, "stages": stages, "filters": filters})


@require_GET
@entity_page
@reads_from_replica
def board_column_cards(request, stage_id):
    """htmx partial: the next page of one column's cards ("Load more")."""
    filters = BoardFilters.from_request(request)
    stages = _stages(request)
    stage = _stage_or_404(stages, stage_id)
    try:
        page = min(max(int(request.GET.get("page", "2")), 1), MAX_PAGE)
    except ValueError:
        page = 2
    cards, has_more = board_selectors.board_column_cards(
        leads=filters.selection(request).leads(), stage=stage, page=page
    )
    context = {
        "cards": cards,
        "has_more": has_more,
        "next_page": page + 1,
        "stage": stage,
        "stages": stages,
        "filters": filters,
    }
    return render(request, "crm/_cards.html", context)


def _timeline_page(request, lead: Lead, page: int) -> dict:
    offset = (page - 1) * TIMELINE_PAGE_SIZE
    events = list(timeline_of(lead=lead)[offset : offset + TIMELINE_PAGE_SIZE + 1])
    return {
        "lead": lead,
        "events": events[:TIMELINE_PAGE_SIZE],
        "has_more": len(events) > TIMELINE_PAGE_SIZE,
        "next_page": page + 1,
    }


def _lead_or_404(request, lead_id, *, last_reply: bool = False) -> Lead:
    leads = Lead.objects.for_entity(request.entity).select_related("stage", "company", "contact", "owner")
    return get_object_or_404(with_last_reply(leads) if last_reply else leads, pk=lead_id)


@require_GET
@entity_page
@reads_from_replica
def lead_detail(request, lead_id):
    """`/crm/leads/{id}`: the lead's fields, its timeline (newest first) and a log-activity form."""
    lead = _lead_or_404(request, lead_id, last_reply=True)
    lead_days_in_stage(lead)
    context = {
        **_timeline_page(request, lead, 1),
        "stages": _stages(request),
        "activity_types": ActivityType.choices,
    }
    return render(request, "crm/lead.html", context)


@require_GET
@entity_page
@reads_from_replica
def lead_timeline(request, lead_id):
    """htmx partial: a page of the timeline (page 1 after logging an activity, later pages on demand)."""
    lead = _lead_or_404(request, lead_id)
    try:
        page = min(max(int(request.GET.get("page", "1")), 1), MAX_PAGE)
    except ValueError:
        page = 1
    return render(request, "crm/_timeline.html", _timeline_page(request, lead, page))
