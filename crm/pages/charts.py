"""Charts drawn on the server as inline SVG: no chart library, no script, nothing from a CDN.

Two shapes cover the dashboard: `column_chart` (vertical bars per category, one bar per series,
for time series) and `bar_chart` (horizontal bars, for pipeline stages with long names). Each
returns SVG markup with `role="img"` named by the element `labelled_by` points at (the figure's
caption); the numbers themselves are in a table next to the chart, the text alternative that
screen readers and tests read. Every string placed in the SVG is escaped here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

Number = int | float | Decimal

FONT = 12
AXIS_WIDTH = 48
LEGEND_HEIGHT = 22


@dataclass(frozen=True)
class Series:
    label: str
    values: Sequence[Number]
    css_class: str  # colours live in the stylesheet: .chart .series-<name>


def nice_ceiling(value: float, *, integer: bool = False) -> float:
    """The smallest 1, 2, 2.5 or 5 × 10^k at or above `value` (1 for nothing to show); with
    `integer`, a whole number (counts never get a 2.5 axis)."""
    if value <= 0:
        return 1
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        candidate = step * 10**exponent
        if candidate >= value and (not integer or candidate == int(candidate)):
            return int(candidate) if integer else candidate
    return 10 ** (exponent + 1)  # pragma: no cover - the loop always returns


def short_number(value: Number) -> str:
    """Axis labels: 950, 1.5k, 12k, 3.4M."""
    value = float(value)
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            scaled = value / limit
            text = f"{scaled:.1f}".rstrip("0").rstrip(".") if scaled < 10 else f"{scaled:.0f}"
            return f"{text}{suffix}"
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def full_number(value: Number) -> str:
    """Labels on bars: 12,500 or 12,500.50."""
    if isinstance(value, Decimal) and value != value.to_integral_value():
        return f"{value:,.2f}"
    return f"{value:,.0f}"


def _ticks(top: float, *, integer: bool) -> list[float]:
    """Gridline values from 0 to `top`: four steps, or one per unit for small whole numbers."""
    count = int(top) if integer and top < 4 else 4
    return [top * index / count for index in range(count + 1)]


def _text(x: float, y: float, content: str, *, anchor: str = "middle", css: str = "label", extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" class="{css}"{extra}>{escape(content)}</text>'


def _legend(series: Sequence[Series], *, x: float, y: float) -> list[str]:
    parts = []
    for item in series:
        parts.append(f'<rect x="{x:.1f}" y="{y - 10:.1f}" width="12" height="12" rx="2" class="{item.css_class}"/>')
        parts.append(_text(x + 16, y, item.label, anchor="start"))
        x += 16 + 7.5 * len(item.label) + 18
    return parts


def _svg(width: float, height: float, labelled_by: str, body: list[str], css: str) -> SafeString:
    # Every text placed in `body` went through escape().
    return mark_safe(
        f'<svg class="chart {css}" viewBox="0 0 {width:.0f} {height:.0f}" width="100%" role="img" '
        f'aria-labelledby="{escape(labelled_by)}" focusable="false" xmlns="http://www.w3.org/2000/svg">'
        + "".join(body)
        + "</svg>"
    )


def column_chart(
    *,
    labelled_by: str,
    categories: Sequence[str],
    series: Sequence[Series],
    axis_format: Callable[[Number], str] = short_number,
    integer: bool = True,
    width: int = 640,
    height: int = 240,
) -> SafeString:
    """Vertical bars: one group per category (e.g. a month), one bar per series in each group.
    `integer`: the values are counts, so the axis shows whole numbers only."""
    legend = LEGEND_HEIGHT if len(series) > 1 else 0
    top_margin, bottom = 10 + legend, 26
    plot_left, plot_right = AXIS_WIDTH, width - 8
    plot_top, plot_bottom = top_margin, height - bottom
    plot_height = plot_bottom - plot_top
    maximum = max((float(value) for item in series for value in item.values), default=0)
    top = nice_ceiling(maximum, integer=integer)
    body: list[str] = []
    if legend:
        body += _legend(series, x=plot_left, y=16)
    for tick in _ticks(top, integer=integer):
        y = plot_bottom - plot_height * tick / top
        body.append(f'<line x1="{plot_left}" y1="{y:.1f}" x2="{plot_right}" y2="{y:.1f}" class="grid"/>')
        body.append(_text(plot_left - 6, y + 4, axis_format(tick), anchor="end", css="axis"))
    slot = (plot_right - plot_left) / max(len(categories), 1)
    bar = max(min(slot * 0.8 / max(len(series), 1), 28), 2)
    for index, category in enumerate(categories):
        group_left = plot_left + slot * index + (slot - bar * len(series)) / 2
        for position, item in enumerate(series):
            value = item.values[index]
            bar_height = plot_height * float(value) / top
            x = group_left + bar * position
            body.append(
                f'<rect x="{x:.1f}" y="{plot_bottom - bar_height:.1f}" width="{bar - 1:.1f}" '
                f'height="{bar_height:.1f}" class="{item.css_class}">'
                f"<title>{escape(category)} · {escape(item.label)}: {escape(full_number(value))}</title></rect>"
            )
        body.append(_text(plot_left + slot * index + slot / 2, plot_bottom + 16, category, css="axis"))
    body.append(f'<line x1="{plot_left}" y1="{plot_bottom}" x2="{plot_right}" y2="{plot_bottom}" class="baseline"/>')
    return _svg(width, height, labelled_by, body, "column-chart")


def bar_chart(
    *,
    labelled_by: str,
    categories: Sequence[str],
    series: Sequence[Series],
    value_format: Callable[[Number], str] = full_number,
    width: int = 640,
    label_width: int = 130,
) -> SafeString:
    """Horizontal bars: one row per category (e.g. a stage), one bar per series, value at its end."""
    legend = LEGEND_HEIGHT if len(series) > 1 else 0
    bar, gap = 16, 10
    row = bar * len(series) + gap
    plot_left, plot_right = label_width, width - 70
    plot_top = 8 + legend
    height = plot_top + row * len(categories) + 6
    maximum = max((float(value) for item in series for value in item.values), default=0)
    top = nice_ceiling(maximum)
    body: list[str] = []
    if legend:
        body += _legend(series, x=plot_left, y=16)
    for index, category in enumerate(categories):
        row_top = plot_top + row * index
        label = category if len(category) <= 18 else category[:17] + "…"
        body.append(_text(plot_left - 8, row_top + bar * len(series) / 2 + 3, label, anchor="end", css="label"))
        for position, item in enumerate(series):
            value = item.values[index]
            length = (plot_right - plot_left) * float(value) / top
            y = row_top + bar * position
            body.append(
                f'<rect x="{plot_left}" y="{y:.1f}" width="{max(length, 0):.1f}" height="{bar - 2}" '
                f'class="{item.css_class}"><title>{escape(category)} · {escape(item.label)}: '
                f"{escape(value_format(value))}</title></rect>"
            )
            body.append(_text(plot_left + length + 6, y + bar - 5, value_format(value), anchor="start", css="value"))
    body.append(f'<line x1="{plot_left}" y1="{plot_top - 2}" x2="{plot_left}" y2="{height - 4}" class="baseline"/>')
    return _svg(width, height, labelled_by, body, "bar-chart")
