"""`/settings/webhooks`: the entity's webhook endpoints, for admins and owners.

List the endpoints with their last deliveries (status and response code), create one (its secret
is shown once, in the answer to that POST, marked no-store), enable or disable, send a test
event, replay from a seq. Every write goes through `webhooks.services`, so the page refuses
exactly what the API refuses (a URL that is not https or not public, unknown event types).
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from axiomatic import changes, errors
from axiomatic.pages import entity_page
from axiomatic.roles import ADMIN, is_admin
from webhooks import feed
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.services import endpoint_create, endpoint_replay, endpoint_send_test, endpoint_update

RECENT_DELIVERIES = 10


def _page_url(request) -> str:
    return f"{reverse('webhooks')}?entityId={request.entity.pk}"


def _endpoints(request) -> list[WebhookEndpoint]:
    endpoints = list(WebhookEndpoint.objects.for_entity(request.entity).order_by("created_at", "id"))
    for endpoint in endpoints:
        endpoint.recent = list(
            WebhookDelivery.objects.for_entity(request.entity)
            .filter(endpoint=endpoint)
            .order_by("-attempted_at", "-id")[:RECENT_DELIVERIES]
        )
    return endpoints


def _act(request, action: str) -> None:
    endpoint = get_object_or_404(WebhookEndpoint.objects.for_entity(request.entity), pk=request.POST.get("endpoint"))
    if action in ("enable", "disable"):
        endpoint_update(endpoint=endpoint, enabled=action == "enable")
        messages.success(request, f"{'Enabled' if action == 'enable' else 'Disabled'} {endpoint.url}.")
    elif action == "test":
        event_id = endpoint_send_test(endpoint=endpoint)
        messages.success(request, f"Sent a test event ({event_id}) to {endpoint.url}; see its deliveries.")
    elif action == "replay":
        from_seq = feed.whole_number(request.POST.get("from_seq") or "", minimum=1, maximum=feed.MAX_SEQ)
        if from_seq is None:  # the API's rule for fromSeq (webhooks.api.ReplaySerializer)
            raise errors.Invalid(
                f"Give the seq to replay from: a whole number from 1 to {feed.MAX_SEQ}, in digits 0-9.",
                field="from_seq",
            )
        endpoint_replay(endpoint=endpoint, from_seq=from_seq)
        messages.success(request, f"Replaying every matching change from seq {from_seq} to {endpoint.url}.")


@never_cache
@require_http_methods(["GET", "POST"])
@entity_page
def webhooks_page(request):
    if not is_admin(request.membership):
        raise PermissionDenied(
            f"You need the {ADMIN} role to manage webhooks; your role in this entity is {request.membership.role}."
        )
    created = None
    form = {"url": "", "event_types": "*", "description": ""}
    form_error = None
    if request.method == "POST":
        action = request.POST.get("action", "")
        if action == "create":
            form = {name: (request.POST.get(name) or "").strip() for name in form}
            try:
                created = endpoint_create(
                    entity=request.entity,
                    url=form["url"],
                    event_types=form["event_types"] or "*",
                    description=form["description"],
                )
                form = {"url": "", "event_types": "*", "description": ""}
            except errors.DomainError as error:
                form_error = error.message
        else:
            try:
                _act(request, action)
            except errors.DomainError as error:
                messages.error(request, error.message)
            return HttpResponseRedirect(_page_url(request))
    context = {
        "endpoints": _endpoints(request),
        "created": created and {"endpoint": created[0], "secret": created[1]},
        "form": form,
        "form_error": form_error,
        "event_types": changes.event_types(),
        "latest_seq": feed.max_visible_seq(request.entity.pk),
    }
    return render(request, "settings/webhooks.html", context)
