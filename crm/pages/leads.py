"""The lead's custom-field form (`/crm/leads/{id}/custom-fields`): its other fields are edited on the
lead page through the API; custom fields get a server-rendered form with an input per type."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from axiomatic.forms import save_through_service
from axiomatic.pages import entity_page
from crm.forms import LeadCustomFieldsForm
from crm.models import Lead
from crm.pages.common import with_query
from crm.services.actors import Actor
from crm.services.leads import lead_update


@require_http_methods(["GET", "POST"])
@entity_page
def lead_custom_fields_edit(request, lead_id):
    lead = get_object_or_404(Lead.objects.for_entity(request.entity), pk=lead_id)
    form = LeadCustomFieldsForm(
        request.POST or None, entity=request.entity, initial=LeadCustomFieldsForm.custom_initial(lead)
    )
    if request.method == "POST" and form.is_valid():
        fields = form.service_fields()
        actor = Actor.from_request(request)
        saved = save_through_service(form, lambda: lead_update(lead=lead, actor=actor, **fields)) if fields else lead
        if saved is not None:
            messages.success(request, f"Saved {saved.title}." if fields else "Nothing changed.")
            return HttpResponseRedirect(with_query(reverse("crm-lead", args=[lead.pk]), request))
        lead.refresh_from_db()
    status = 400 if request.method == "POST" else 200
    return render(request, "crm/lead_custom_fields_form.html", {"form": form, "lead": lead}, status=status)
