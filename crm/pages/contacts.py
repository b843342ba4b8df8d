"""`/crm/contacts`: the list (the API's filters and `q`, keyset "load more"), a contact's page
(its companies, leads and activities, each bounded) and the create / edit forms, which call
`crm.services.contacts.contact_create` / `contact_update` and show their refusals as the API
words them. The primary company is picked by searching (never a list of every company).
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
from crm.filters import ContactFilter
from crm.forms import ContactForm
from crm.models import Company, Contact
from crm.pages.common import entity_members, text, with_query
from crm.pages.companies import activities_context
from crm.pages.duplicates import survivor_or_404
from crm.pages.imports import export_url
from crm.pages.lists import ListSpec, render_list
from crm.selectors.contacts import with_primary_company
from crm.selectors.records import contact_list_page, contact_memberships, related_leads
from crm.services.contacts import contact_create, contact_update

CONTACT_LIST = ListSpec(
    path="/crm/contacts",
    filterset_class=ContactFilter,
    filter_names=("q", "ownerUserId", "companyId", "email"),
    cursor_kinds=(text, text, uuid.UUID),
    page=contact_list_page,
    template="crm/contacts.html",
    rows_template="crm/_contact_rows.html",
)


def _contact_or_404(request, contact_id) -> Contact:
    contacts = with_primary_company(Contact.objects.for_entity(request.entity).select_related("owner"))
    return get_object_or_404(contacts, pk=contact_id)


def _company_named(request, value) -> Company | None:
    try:
        company_id = uuid.UUID(str(value))
    except ValueError:
        return None
    return Company.objects.for_entity(request.entity).filter(pk=company_id).first()


@require_GET
@entity_page
def contacts(request):
    company = _company_named(request, request.GET.get("companyId", ""))
    extra = {"members": entity_members(request.entity), "filter_company": company}
    extra["export_url"] = export_url(request, "contacts")
    return render_list(request, CONTACT_LIST, Contact.objects.for_entity(request.entity), extra)


@require_GET
@entity_page
def contact_detail(request, contact_id):
    contact = survivor_or_404(request, "contact", contact_id, lambda: _contact_or_404(request, contact_id))
    if isinstance(contact, HttpResponseRedirect):  # a merged contact's old link
        return contact
    memberships, more_memberships = contact_memberships(contact=contact)
    leads, more_leads = related_leads(entity=request.entity, contact=contact)
    context = {
        "contact": contact,
        "memberships": memberships,
        "more_memberships": more_memberships,
        "leads": leads,
        "more_leads": more_leads,
        **activities_context(request, url=reverse("crm-contact-activities", args=[contact.pk]), contact=contact),
    }
    return render(request, "crm/contact.html", context)


@require_GET
@entity_page
def contact_activities(request, contact_id):
    """htmx partial: the next activities of the contact ("load more")."""
    contact = _contact_or_404(request, contact_id)
    url = reverse("crm-contact-activities", args=[contact.pk])
    return render(request, "crm/_activity_rows.html", activities_context(request, url=url, contact=contact))


def _render_form(request, form: ContactForm, contact: Contact | None):
    status = 400 if request.method == "POST" else 200
    return render(request, "crm/contact_form.html", {"form": form, "contact": contact}, status=status)


@require_http_methods(["GET", "POST"])
@entity_page
def contact_new(request):
    """New contact; `?companyId=` (from a company's page) preselects the primary company."""
    preset = _company_named(request, request.GET.get("companyId", ""))
    form = ContactForm(request.POST or None, entity=request.entity, initial={"company": preset.pk if preset else None})
    form.initial_company = preset
    if request.method == "POST" and form.is_valid():
        contact = save_through_service(
            form, lambda: contact_create(entity=request.entity, **form.service_fields(changed_only=False))
        )
        if contact is not None:
            messages.success(request, f"Created {contact}.")
            return HttpResponseRedirect(with_query(reverse("crm-contact", args=[contact.pk]), request))
    return _render_form(request, form, None)


@require_http_methods(["GET", "POST"])
@entity_page
def contact_edit(request, contact_id):
    contact = _contact_or_404(request, contact_id)
    current = _company_named(request, contact.primary_company_id) if contact.primary_company_id else None
    form = ContactForm(
        request.POST or None, entity=request.entity, initial=ContactForm.initial_of(contact, company=current)
    )
    form.initial_company = current
    if request.method == "POST" and form.is_valid():
        fields = form.service_fields(changed_only=True)
        saved = save_through_service(form, lambda: contact_update(contact=contact, **fields)) if fields else contact
        if saved is not None:
            messages.success(request, f"Saved {saved}." if fields else "Nothing changed.")
            return HttpResponseRedirect(with_query(reverse("crm-contact", args=[contact.pk]), request))
        contact.refresh_from_db()
    return _render_form(request, form, contact)
