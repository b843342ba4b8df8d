"""The total a filtered list answers: counted up to `COUNT_CAP` matches (CONTRACT: "the server may
stop counting at 10,000 matches"), or known over the cap without counting.

Why here, in the core: the API's paginator counts, but the filters (shared by the API and the sales
pages) are what can tell that counting is pointless — a custom-field value the planner's statistics
put far above the cap (`crm.filters`), whose count would read the table row by row. The filter
marks the request; the paginator reads the mark.
"""

from __future__ import annotations

COUNT_CAP = 10_000
_TOTAL_OVER_CAP = "_axiomatic_total_over_cap"


def total_known_over_cap(request) -> None:
    """Mark `request`: its list matches more than `COUNT_CAP` rows, so it answers `total: COUNT_CAP,
    totalExact: false` (what counting would answer) without counting."""
    if request is not None:
        setattr(request, _TOTAL_OVER_CAP, True)


def is_total_known_over_cap(request) -> bool:
    return bool(getattr(request, _TOTAL_OVER_CAP, False))
