"""Browser pages of `/crm/connections`: connect a mailbox through the provider's OAuth consent.

- `GET /crm/connections` lists the entity's mailboxes, with Connect Gmail / Connect Outlook.
- `GET /crm/connections/{gmail|outlook}/connect` remembers a fresh `state` (and PKCE verifier)
  in the session with the entity id, then redirects to the provider's authorize URL.
- `GET /crm/connections/{channel}/callback` checks the `state`, exchanges the code, reads the
  mailbox address and stores the connection (the same address again updates it).
- `POST /crm/connections/{id}/disconnect` (CSRF) forgets the tokens and marks it `revoked`.
- `POST /crm/connections/{id}/sync-enabled` turns the inbound sync on or off (who connected it, or
  an admin); `POST /crm/connections/{id}/sync` syncs it now. The list shows each mailbox's sync
  state, last sync, last error, and asks for a reconnect when reading was never granted.
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import path, reverse
from django.views.decorators.http import require_GET, require_POST

from axiomatic import errors
from axiomatic.pages import entity_page
from axiomatic.roles import ADMIN, is_admin, require_role
from axiomatic.tenancy.database import entity_scope
from axiomatic.tenancy.resolve import remember_page_entity, require_membership
from crm.choices import EmailChannel
from crm.email.connections import (
    connection_connect,
    connection_ensure_manageable_by,
    connection_revoke,
    connection_share,
)
from crm.email.inbound import connection_request_sync, connection_set_sync, sync_enqueue
from crm.models import OutboundEmailConnection
from crm.providers import provider_for
from crm.providers.base import ProviderError
from crm.providers.oauth import CodeExchangeFailed, authorization_request, exchange_code, oauth_config

SESSION_FLOWS_KEY = "email_oauth_flows"
FLOW_MAX_AGE_SECONDS = 10 * 60
MAX_PENDING_FLOWS = 5


def _callback_url(request: HttpRequest, channel: str) -> str:
    """The redirect URI registered with the provider: `OAUTH_REDIRECT_BASE_URL` + path when set
    (right behind a TLS proxy whatever the request looks like), else built from the request."""
    callback_path = reverse("crm-connections-callback", args=[channel])
    if settings.OAUTH_REDIRECT_BASE_URL:
        return settings.OAUTH_REDIRECT_BASE_URL + callback_path
    return request.build_absolute_uri(callback_path)


def _channel_or_404(channel: str) -> str:
    if channel not in EmailChannel.values:
        raise Http404("Unknown mailbox provider.")
    return channel


def _list_url(entity_id) -> str:
    return f"{reverse('crm-connections')}?{urlencode({'entityId': str(entity_id)})}"


def _pending_flows(request: HttpRequest) -> dict:
    """OAuth flows started in this session and not yet finished (expired ones dropped)."""
    flows = request.session.get(SESSION_FLOWS_KEY) or {}
    now = time.time()
    return {state: flow for state, flow in flows.items() if now - flow.get("startedAt", 0) < FLOW_MAX_AGE_SECONDS}


@require_GET
@entity_page
def connections_page(request: HttpRequest) -> HttpResponse:
    connections = (
        OutboundEmailConnection.objects.for_entity(request.entity)
        .select_related("connected_by")
        .order_by("created_at", "id")
    )
    providers = [
        {"channel": channel, "label": config.label, "configured": config.configured}
        for channel, config in ((c, oauth_config(c)) for c in EmailChannel.values)
    ]
    context = {"connections": connections, "providers": providers, "can_manage_all": is_admin(request.membership)}
    return render(request, "crm/connections.html", context)


@require_GET
@entity_page
def connect(request: HttpRequest, channel: str) -> HttpResponse:
    """Start the consent: remember state + entity in the session, send the user to the provider."""
    config = oauth_config(_channel_or_404(channel))
    if not config.configured:
        messages.error(request, f"{config.label} is not configured on this server (missing OAuth client settings).")
        return HttpResponseRedirect(_list_url(request.entity.pk))
    redirect_uri = _callback_url(request, channel)
    auth = authorization_request(channel=channel, redirect_uri=redirect_uri)
    flows = _pending_flows(request)
    flows[auth.state] = {
        "channel": channel,
        "entityId": str(request.entity.pk),
        "codeVerifier": auth.code_verifier,
        "redirectUri": redirect_uri,
        "startedAt": time.time(),
    }
    newest = sorted(flows.items(), key=lambda item: item[1]["startedAt"])[-MAX_PENDING_FLOWS:]
    request.session[SESSION_FLOWS_KEY] = dict(newest)
    return HttpResponseRedirect(auth.url)


@require_GET
@login_required
@transaction.non_atomic_requests  # talks to the provider; the store below has its own transaction
def callback(request: HttpRequest, channel: str) -> HttpResponse:
    """The provider sends the user back here with `code` and `state` (or `error`)."""
    config = oauth_config(_channel_or_404(channel))
    flows = _pending_flows(request)
    state = request.GET.get("state", "")
    flow = flows.pop(state, None) if state else None
    request.session[SESSION_FLOWS_KEY] = flows
    if flow is None or flow["channel"] != channel:
        messages.error(request, "The mailbox sign-in could not be verified (unknown or expired state). Try again.")
        return HttpResponseRedirect(reverse("crm-connections"))
    # No request transaction here (the provider is called in between): the entity the flow started
    # in is the row-level-security scope of the membership check and the store (axiomatic.rls).
    with entity_scope(flow["entityId"]):
        return _callback_in_entity(request, channel, config, flow)


def _callback_in_entity(request: HttpRequest, channel: str, config, flow: dict) -> HttpResponse:
    try:
        entity = require_membership(request.user, flow["entityId"]).entity
    except errors.Forbidden as error:
        raise PermissionDenied(error.message) from None
    remember_page_entity(request, entity.pk)
    back = HttpResponseRedirect(_list_url(entity.pk))

    if request.GET.get("error"):
        messages.error(request, f"{config.label} did not grant access ({request.GET['error'][:100]}).")
        return back
    code = request.GET.get("code", "")
    if not code:
        messages.error(request, f"{config.label} sent no authorization code. Try again.")
        return back
    try:
        tokens = exchange_code(
            channel=channel, redirect_uri=flow["redirectUri"], code=code, code_verifier=flow["codeVerifier"]
        )
        with provider_for(channel, access_token=tokens.access_token) as provider:
            mailbox = provider.mailbox()
    except (CodeExchangeFailed, ProviderError) as exc:
        messages.error(request, f"Could not connect the mailbox: {exc}")
        return back
    connection = connection_connect(entity=entity, channel=channel, mailbox=mailbox, tokens=tokens, user=request.user)
    messages.success(request, f"Connected {connection.get_channel_display()} mailbox {connection.email_address}.")
    return back


@require_POST
@entity_page
def disconnect(request: HttpRequest, connection_id) -> HttpResponse:
    connection = get_object_or_404(OutboundEmailConnection.objects.for_entity(request.entity), pk=connection_id)
    try:
        connection_ensure_manageable_by(connection=connection, membership=request.membership)
    except errors.Forbidden as refusal:
        messages.error(request, refusal.message)
        return HttpResponseRedirect(_list_url(request.entity.pk))
    connection_revoke(connection=connection)
    messages.success(request, f"Disconnected {connection.email_address}.")
    return HttpResponseRedirect(_list_url(request.entity.pk))


@require_POST
@entity_page
def share(request: HttpRequest, connection_id) -> HttpResponse:
    """Admins mark a mailbox shared (every member may send through it) or personal again."""
    connection = get_object_or_404(OutboundEmailConnection.objects.for_entity(request.entity), pk=connection_id)
    try:
        require_role(request.membership, ADMIN, doing="share a mailbox")
    except errors.Forbidden as refusal:
        messages.error(request, refusal.message)
        return HttpResponseRedirect(_list_url(request.entity.pk))
    connection_share(connection=connection, shared=request.POST.get("shared") == "1")
    state = "shared with every member" if connection.shared else "personal"
    messages.success(request, f"{connection.email_address} is now {state}.")
    return HttpResponseRedirect(_list_url(request.entity.pk))


@require_POST
@entity_page
def sync_enabled(request: HttpRequest, connection_id) -> HttpResponse:
    """Turn a mailbox's inbound sync on or off (whoever connected it, or an admin)."""
    connection = get_object_or_404(OutboundEmailConnection.objects.for_entity(request.entity), pk=connection_id)
    try:
        connection_ensure_manageable_by(connection=connection, membership=request.membership)
    except errors.Forbidden as refusal:
        messages.error(request, refusal.message)
        return HttpResponseRedirect(_list_url(request.entity.pk))
    connection_set_sync(connection=connection, enabled=request.POST.get("enabled") == "1")
    state = "on" if connection.sync_enabled else "off"
    messages.success(request, f"Reading replies from {connection.email_address} is {state}.")
    return HttpResponseRedirect(_list_url(request.entity.pk))


@require_POST
@entity_page
def sync_now(request: HttpRequest, connection_id) -> HttpResponse:
    """Read the mailbox now instead of at the next interval (a worker does it after the request)."""
    connection = get_object_or_404(OutboundEmailConnection.objects.for_entity(request.entity), pk=connection_id)
    try:
        connection_request_sync(connection=connection)
    except errors.Conflict as refusal:
        messages.error(request, refusal.message)
        return HttpResponseRedirect(_list_url(request.entity.pk))
    connection_id_text = str(connection.pk)
    transaction.on_commit(lambda: sync_enqueue(connection_id=connection_id_text), robust=True)
    messages.success(request, f"Reading {connection.email_address} now.")
    return HttpResponseRedirect(_list_url(request.entity.pk))


# Included under /crm/ by crm/urls.py.
urlpatterns = [
    path("connections", connections_page, name="crm-connections"),
    path("connections/<str:channel>/connect", connect, name="crm-connections-connect"),
    path("connections/<str:channel>/callback", callback, name="crm-connections-callback"),
    path("connections/<uuid:connection_id>/disconnect", disconnect, name="crm-connections-disconnect"),
    path("connections/<uuid:connection_id>/share", share, name="crm-connections-share"),
    path("connections/<uuid:connection_id>/sync-enabled", sync_enabled, name="crm-connections-sync-enabled"),
    path("connections/<uuid:connection_id>/sync", sync_now, name="crm-connections-sync"),
]
