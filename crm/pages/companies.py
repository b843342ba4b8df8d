"""`/crm/companies`: the list (the API's filters and `q`, keyset "load more"), a company's page
(its contacts, leads and activities, each bounded) and the create / edit forms, which call
`crm.services.companies.company_create` / `company_update` and show their refusals as the API
words them.
"""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from axiomatic.forms import save_through_service
from axiomatic.pages import entity_page
from crm.choices import CompanyRole, CompanyStatus
from crm.filters import CompanyFilter
from crm.forms import CompanyForm
from crm.models import Company
from crm.pages.common import aware_datetime, cursor_decode, cursor_encode, entity_members, text, with_query
from crm.pages.duplicates import survivor_or_404
from crm.pages.imports import export_url
from crm.pages.lists import ListSpec, render_list
from crm.selectors.records import (
    company_contacts,
    company_list_page,
    related_activities,
    related_leads,
)
from crm.selectors.search import search_companies, search_text_clean, search_words
from crm.services.companies import company_create, company_update

COMPANY_LIST = ListSpec(
    path="/crm/companies",
    filterset_class=CompanyFilter,
    filter_names=("q", "role", "status", "ownerUserId"),
    cursor_kinds=(text, uuid.UUID),
    page=company_list_page,
    template="crm/companies.html",
    rows_template="crm/_company_rows.html",
)
ACTIVITY_CURSOR = (aware_datetime, uuid.UUID)
PICKER_LIMIT = 20


def _company_or_404(request, company_id) -> Company:
    return get_object_or_404(Company.objects.for_entity(request.entity).select_related("owner"), pk=company_id)


@require_GET
@entity_page
def companies(request):
    extra = {
        "members": entity_members(request.entity),
        "roles": CompanyRole.choices,
        "statuses": CompanyStatus.choices,
        "export_url": export_url(request, "companies"),
    }
    return render_list(request, COMPANY_LIST, Company.objects.for_entity(request.entity), extra)


def activities_context(request, *, url: str, **relation) -> dict:
    after = cursor_decode(request.GET.get("after", ""), ACTIVITY_CURSOR)
    page = related_activities(entity=request.entity, after=after, **relation)
    return {
        "activities": page.rows,
        "activities_more_url": with_query(url, request, after=cursor_encode(page.next_after)) if page.has_more else "",
    }


@require_GET
@entity_page
def company_detail(request, company_id):
    company = survivor_or_404(request, "company", company_id, lambda: _company_or_404(request, company_id))
    if isinstance(company, HttpResponseRedirect):  # a merged company's old link
        return company
    contacts, more_contacts = company_contacts(company=company)
    leads, more_leads = related_leads(entity=request.entity, company=company)
    context = {
        "company": company,
        "contacts": contacts,
        "more_contacts": more_contacts,
        "leads": leads,
        "more_leads": more_leads,
        **activities_context(request, url=reverse("crm-company-activities", args=[company.pk]), company=company),
    }
    return render(request, "crm/company.html", context)


@require_GET
@entity_page
def company_activities(request, company_id):
    """htmx partial: the next activities of the company ("load more")."""
    company = _company_or_404(request, company_id)
    url = reverse("crm-company-activities", args=[company.pk])
    return render(request, "crm/_activity_rows.html", activities_context(request, url=url, company=company))


@require_http_methods(["GET", "POST"])
@entity_page
def company_new(request):
    form = CompanyForm(request.POST or None, entity=request.entity)
    if request.method == "POST" and form.is_valid():
        company = save_through_service(
            form, lambda: company_create(entity=request.entity, **form.service_fields(changed_only=False))
        )
        if company is not None:
            messages.success(request, f"Created {company.name}.")
            return HttpResponseRedirect(with_query(reverse("crm-company", args=[company.pk]), request))
    status = 400 if request.method == "POST" else 200
    return render(request, "crm/company_form.html", {"form": form, "company": None}, status=status)


@require_http_methods(["GET", "POST"])
@entity_page
def company_edit(request, company_id):
    company = _company_or_404(request, company_id)
    form = CompanyForm(request.POST or None, entity=request.entity, initial=CompanyForm.initial_of(company))
    if request.method == "POST" and form.is_valid():
        fields = form.service_fields(changed_only=True)
        saved = save_through_service(form, lambda: company_update(company=company, **fields)) if fields else company
        if saved is not None:
            messages.success(request, f"Saved {saved.name}." if fields else "Nothing changed.")
            return HttpResponseRedirect(with_query(reverse("crm-company", args=[company.pk]), request))
        company.refresh_from_db()  # the refused update must not show as if applied
    status = 400 if request.method == "POST" else 200
    return render(request, "crm/company_form.html", {"form": form, "company": company}, status=status)


@require_GET
@entity_page
def company_options(request):
    """htmx partial for the contact form's company picker: `<option>`s of the companies whose
    name matches `q` (at most 20), after "no company" and the current choice."""
    current = None
    try:
        current_id = uuid.UUID(request.GET.get("company", ""))
    except ValueError:
        current_id = None
    if current_id is not None:
        current = Company.objects.for_entity(request.entity).filter(pk=current_id).first()
    words = search_words(search_text_clean(request.GET.get("company_q", "")))
    matches = []
    if words:
        found = search_companies(entity=request.entity, words=words, limit=PICKER_LIMIT + 1)
        if current is not None:
            found = found.exclude(pk=current.pk)
        matches = list(found[:PICKER_LIMIT])
    return render(request, "crm/_company_options.html", {"current": current, "matches": matches})
