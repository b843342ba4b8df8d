"""`/settings/api-keys`: API keys of the current entity; issue, list and revoke.

Members see and revoke their own keys; admins and owners see and revoke every key of the entity
(someone leaving, a leaked key) — the role read from the current membership, as in the API.

Issuing and revoking go through `apikeys.services`. A new key's secret appears only in the
response to the POST that created it (never stored, never redirected through the session), and
that response is marked no-store.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from apikeys.forms import ApiKeyCreateForm
from apikeys.models import ApiKey
from apikeys.services import api_key_issue, api_key_revoke
from axiomatic.pages import entity_page
from axiomatic.roles import is_admin


def _visible_keys(request):
    keys = ApiKey.objects.for_entity(request.entity).select_related("user").order_by("-created_at", "id")
    return keys if is_admin(request.membership) else keys.filter(user=request.user)


def _list_url(request) -> str:
    return f"{reverse('api-keys')}?entityId={request.entity.pk}"


@never_cache
@require_http_methods(["GET", "POST"])
@entity_page
def api_keys(request):
    issued = None
    if request.method == "POST":
        form = ApiKeyCreateForm(request.POST, entity=request.entity)
        if form.is_valid():
            issued = api_key_issue(
                entity=request.entity,
                user=request.user,
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                expires_at=form.expires_at(),
            )
            form = ApiKeyCreateForm(entity=request.entity)
    else:
        form = ApiKeyCreateForm(entity=request.entity)
    context = {
        "form": form,
        "issued": issued,
        "keys": list(_visible_keys(request)),
        "all_keys": is_admin(request.membership),
    }
    return render(request, "settings/api_keys.html", context)


@never_cache
@require_http_methods(["GET", "POST"])
@entity_page
def api_key_revoke_confirm(request, key_id):
    """GET asks for confirmation; POST (with CSRF) revokes. A member's own keys; any for admins."""
    api_key = get_object_or_404(_visible_keys(request), pk=key_id)
    if request.method == "POST":
        api_key_revoke(api_key)
        messages.success(request, f"Revoked the key “{api_key.name}” ({api_key.prefix}…).")
        return HttpResponseRedirect(_list_url(request))
    return render(request, "settings/api_key_revoke.html", {"api_key": api_key})
