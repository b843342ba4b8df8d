"""`/crm/dashboard`: the figures of `GET /api/crm/dashboard`, with charts drawn on the server.

The figures come from the same selector as the API (`crm.selectors.dashboard.dashboard_summary`),
the monthly and weekly series from `crm.selectors.charts` (one bounded GROUP BY each). Each chart
is inline SVG next to a table holding its numbers (the text alternative).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from axiomatic.pages import entity_page
from axiomatic.replica import reads_from_replica
from crm.pages.charts import Series, bar_chart, column_chart, full_number
from crm.pages.common import OwnerFilter, entity_members
from crm.selectors.charts import activities_by_week, won_lost_by_month
from crm.selectors.dashboard import dashboard_summary


@dataclass(frozen=True)
class Chart:
    """One chart of the page: its id (the caption's is `<id>-caption`), the SVG, a sub-caption."""

    id: str
    svg: str
    label: str = ""


def _pipeline_charts(pipeline: list[dict]) -> tuple[Chart, list[Chart], list[str]]:
    names = [stage["name"] for stage in pipeline]
    counts = Chart(
        id="chart-pipeline-count",
        svg=bar_chart(
            labelled_by="chart-pipeline-count-caption",
            categories=names,
            series=[Series("Leads", [stage["lead_count"] for stage in pipeline], "series-count")],
        ),
    )
    currencies = sorted({money["currency"] for stage in pipeline for money in stage["value"]})
    values = []
    for currency in currencies:
        amounts = [
            next((money["amount"] for money in stage["value"] if money["currency"] == currency), Decimal(0))
            for stage in pipeline
        ]
        chart_id = f"chart-pipeline-value-{currency.lower()}"
        values.append(
            Chart(
                id=chart_id,
                label=f"Value by stage ({currency})",
                svg=bar_chart(
                    labelled_by=f"{chart_id}-caption",
                    categories=names,
                    series=[Series(f"Value ({currency})", amounts, "series-value")],
                    value_format=full_number,
                ),
            )
        )
    return counts, values, currencies


@require_GET
@entity_page
@reads_from_replica
def dashboard(request):
    """The dashboard of the current entity, for everyone's records, mine, or one member's."""
    members = entity_members(request.entity)
    owner = OwnerFilter.parse(request.GET.get("owner"), user=request.user, members=members) or OwnerFilter("", None)
    now = timezone.now()
    summary = dashboard_summary(entity=request.entity, owner=owner.selector, now=now)
    months = won_lost_by_month(entity=request.entity, owner=owner.selector, now=now)
    weeks = activities_by_week(entity=request.entity, now=now)
    pipeline_count, pipeline_values, currencies = _pipeline_charts(summary["pipeline"])
    for stage in summary["pipeline"]:
        by_currency = {money["currency"]: money["amount"] for money in stage["value"]}
        stage["amounts"] = [(currency, by_currency.get(currency)) for currency in currencies]
    tasks = summary["tasks"]
    context = {
        "summary": summary,
        "owner": owner,
        "members": [member for member in members if member.pk != request.user.pk],
        "currencies": currencies,
        "pipeline_count": pipeline_count,
        "pipeline_values": pipeline_values,
        "months": months,
        "won_lost": Chart(
            id="chart-won-lost",
            svg=column_chart(
                labelled_by="chart-won-lost-caption",
                categories=[month.month.strftime("%b %y") for month in months],
                series=[
                    Series("Won", [month.won for month in months], "series-won"),
                    Series("Lost", [month.lost for month in months], "series-lost"),
                ],
            ),
        ),
        "weeks": weeks,
        "weekly": Chart(
            id="chart-activities",
            svg=column_chart(
                labelled_by="chart-activities-caption",
                categories=[week.week.strftime("%d %b") for week in weeks],
                series=[Series("Activities", [week.count for week in weeks], "series-activity")],
            ),
        ),
        "tasks_chart": Chart(
            id="chart-tasks",
            svg=bar_chart(
                labelled_by="chart-tasks-caption",
                categories=["Open", "Overdue", "Due today"],
                series=[Series("Tasks", [tasks["open"], tasks["overdue"], tasks["due_today"]], "series-task")],
            ),
        ),
        "money": {
            name: [(money["currency"], money["amount"]) for money in amounts]
            for name, amounts in summary["totals"].items()
        },
        "win_rate_pct": None if summary["win_rate_90_days"] is None else round(summary["win_rate_90_days"] * 100, 1),
    }
    return render(request, "crm/dashboard.html", context)
