"""Webhook endpoints: create, change, rotate the secret, replay, test; kicking delivery after commit.

The API, the settings page and the admin come through here. A URL is checked before it is saved
(`webhooks.net.check_url`: https, public addresses only) and again at every delivery. A new
endpoint starts at the entity's newest change: it receives what happens from now on (replay
reaches back). Enabling an endpoint again resumes from its place: nothing is lost.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import F
from django.db.models.functions import Least
from django.utils import timezone

from axiomatic import errors
from axiomatic.changes import actor_ref, add_listener, new_event_id
from axiomatic.models import Entity
from axiomatic.timestamps import iso_utc
from webhooks import feed, net
from webhooks.models import WebhookEndpoint
from webhooks.signing import new_secret

logger = logging.getLogger("webhooks")

PREVIOUS_SECRET_LIFETIME = timedelta(hours=24)
MAX_DESCRIPTION = 500


def _clean_url(url: str) -> str:
    try:
        net.check_url(url)
    except net.UrlRefused as exc:
        raise errors.Invalid(str(exc), field="url") from None
    return url.strip()


def _clean_types(event_types) -> list[str]:
    if event_types is None:
        return ["*"]
    try:
        patterns = feed.parse_patterns(event_types, field="event_types")
    except feed.FeedError as exc:
        raise errors.Invalid(exc.message, field="event_types") from None
    if not patterns:
        raise errors.Invalid("List at least one event type pattern (or *).", field="event_types")
    return patterns


def endpoint_secrets(endpoint: WebhookEndpoint) -> list[str]:
    """The secrets that sign now: the current one, and the previous one for 24 hours after a rotation."""
    found = [endpoint.secret]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret_encrypted and expires and expires > timezone.now():
        found.append(endpoint.previous_secret)
    return found


@transaction.atomic
def endpoint_create(
    *, entity: Entity, url: str, event_types=None, description: str = "", enabled: bool = True
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its secret (shown once). It starts at the entity's newest change."""
    endpoint = WebhookEndpoint(
        entity=entity,
        url=_clean_url(url),
        event_types=_clean_types(event_types),
        description=(description or "").strip()[:MAX_DESCRIPTION],
        enabled=enabled,
        delivered_seq=feed.max_visible_seq(entity.pk),
    )
    secret = new_secret()
    endpoint.set_secret(secret)
    endpoint.save()
    return endpoint, secret


@transaction.atomic
def endpoint_update(*, endpoint: WebhookEndpoint, **fields) -> WebhookEndpoint:
    """Change `url`, `event_types`, `description` or `enabled`. Enabling an endpoint (also one the
    delivery disabled) clears its retry state and delivers everything since its place."""
    locked = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    if "url" in fields:
        locked.url = _clean_url(fields["url"])
    if "event_types" in fields:
        locked.event_types = _clean_types(fields["event_types"])
    if "description" in fields:
        locked.description = (fields["description"] or "").strip()[:MAX_DESCRIPTION]
    enable = fields.get("enabled")
    if enable is True and not locked.enabled:
        locked.enabled, locked.disabled_reason = True, ""
        locked.failed_attempts, locked.next_attempt_at = 0, None
    elif enable is False and locked.enabled:
        locked.enabled, locked.disabled_reason = False, "Disabled by a user."
    locked.save()
    if locked.enabled:
        kick([locked.pk])
    return locked


def endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    endpoint.delete()


@transaction.atomic
def endpoint_rotate_secret(*, endpoint: WebhookEndpoint) -> tuple[WebhookEndpoint, str]:
    """A new secret (returned once); the old one keeps signing beside it for 24 hours."""
    locked = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    secret = new_secret()
    locked.set_secret(secret, previous=locked.secret, previous_expires_at=timezone.now() + PREVIOUS_SECRET_LIFETIME)
    locked.save()
    return locked, secret


@transaction.atomic
def endpoint_replay(*, endpoint: WebhookEndpoint, from_seq: int) -> WebhookEndpoint:
    """Deliver again every matching change from `from_seq` on (same ids, in order). A delivery in
    flight meanwhile does not move the place forward (the generation changes)."""
    if from_seq < 1:
        raise errors.Invalid("fromSeq must be at least 1.", field="from_seq")
    oldest = feed.pruned_through(endpoint.entity_id) + 1
    if from_seq < oldest:
        raise errors.Invalid(
            f"Changes before seq {oldest} are no longer kept; replay from {oldest} on.", field="from_seq"
        )
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        # Never past changes still waiting: those before `from_seq` go first, as always.
        delivered_seq=Least(F("delivered_seq"), from_seq - 1),
        generation=F("generation") + 1,
        failed_attempts=0,
        next_attempt_at=None,
    )
    endpoint.refresh_from_db()
    if endpoint.enabled:
        kick([endpoint.pk])
    return endpoint


def build_test_event(endpoint: WebhookEndpoint, *, actor=None) -> dict:
    kind, pk = actor_ref(actor)
    return {
        "id": new_event_id(),
        "seq": None,
        "type": feed.TEST_EVENT_TYPE,
        "objectType": "webhook_endpoint",
        "objectId": str(endpoint.pk),
        "occurredAt": iso_utc(timezone.now()),
        "actor": {"type": kind, "id": pk},
        "data": {"id": str(endpoint.pk), "url": endpoint.url, "message": "A test event from Axiomatic CRM."},
        "previous": None,
    }


def endpoint_send_test(*, endpoint: WebhookEndpoint, actor=None) -> str:
    """Queue one `webhook.test` delivery now (outside the ordered stream, one attempt); its id."""
    event = build_test_event(endpoint, actor=actor)
    endpoint_id = str(endpoint.pk)

    def send() -> None:
        from webhooks.tasks import send_test_event  # webhooks.tasks imports this module

        try:
            send_test_event.apply_async((endpoint_id, event), retry=False)
        except Exception as exc:
            logger.warning("Could not queue the test event of %s (%s)", endpoint_id, type(exc).__name__)

    transaction.on_commit(send, robust=True)
    return event["id"]


# --- kicking delivery ---------------------------------------------------------------------------


def kick(endpoint_ids) -> None:
    """After commit, one delivery task per endpoint (a running one makes it a no-op: the claim).
    A broker that is away costs nothing: the sweep (`webhooks.sweep`) finds the work again."""
    ids = [str(pk) for pk in endpoint_ids]
    if ids:
        transaction.on_commit(lambda: enqueue(ids), robust=True)


def enqueue(endpoint_ids, *, countdown: float | None = None) -> int:
    from webhooks.tasks import deliver_endpoint  # webhooks.tasks imports this module

    if countdown and deliver_endpoint.app.conf.task_always_eager:
        return 0  # no broker: the sweep runs the retry when it is due
    queued = 0
    for endpoint_id in endpoint_ids:
        try:
            deliver_endpoint.apply_async((str(endpoint_id),), countdown=countdown, retry=False)
        except Exception as exc:
            logger.warning(
                "Could not queue webhook delivery for %s (%s); the sweep will", endpoint_id, type(exc).__name__
            )
            continue
        queued += 1
    return queued


def on_changes_recorded(entity_ids: set) -> None:
    """`axiomatic.changes` listener: the enabled endpoints of those entities get a delivery task
    once the transaction commits (one indexed query; none when an entity has no endpoint)."""
    ids = list(WebhookEndpoint.objects.filter(entity_id__in=entity_ids, enabled=True).values_list("pk", flat=True))
    kick(ids)


def connect() -> None:
    add_listener(on_changes_recorded)
