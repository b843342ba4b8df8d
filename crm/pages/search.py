"""`/crm/search?q=`: the header's search box.

With htmx (typing in the box) the answer is the listbox's options, grouped (companies, contacts,
leads; at most 8 each, and an option leading to the full list of each group that has more);
without script (Enter in the box) a page with the same results. The query is
`crm.selectors.search.search_all`: three bounded, entity-scoped queries.
"""

from __future__ import annotations

from django.shortcuts import render
from django.views.decorators.http import require_GET

from axiomatic.pages import entity_page
from crm.selectors.search import MIN_QUERY_LENGTH, search_all


@require_GET
@entity_page
def search(request):
    results = search_all(entity=request.entity, text=request.GET.get("q", ""))
    context = {"results": results, "min_length": MIN_QUERY_LENGTH}
    if request.htmx:
        return render(request, "crm/_search_results.html", context)
    return render(request, "crm/search.html", context)
