"""Fixtures for outbound email: the fake provider server, a real Celery worker, connections.

Worker tests (`@pytest.mark.worker`) run a real Celery worker in a thread against the Redis
broker (`TEST_CELERY_BROKER_URL`, default redis://127.0.0.1:6379/7), on a queue of their own per
xdist worker and per run (deleted afterwards), and need `transactional_db` so the worker's
connection sees committed rows. The rest of the suite keeps Celery eager: the app is reconfigured
only inside the fixture.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from urllib.parse import urlsplit

import pytest
import requests
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.db import connections
from django.test import Client

from axiomatic.celery import app as celery_app
from crm.email.connections import connection_connect
from crm.models import Lead, OutboundEmail, OutboundEmailConnection
from crm.providers.base import Mailbox
from crm.providers.oauth import TokenSet
from tests import factories
from tests.crm.email.fake_provider import CLIENTS, FakeProvider

XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
BROKER_URL = os.environ.get("TEST_CELERY_BROKER_URL", "redis://127.0.0.1:6379/7")
# Unique per run as well as per xdist worker: two runs sharing the broker never steal each other's tasks.
QUEUE = f"axiomatic-test-email-{XDIST_WORKER}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def fake_provider_server():
    server = FakeProvider()
    yield server
    server.stop()


@pytest.fixture
def fake_provider(fake_provider_server, settings):
    """The fake provider, reset, with every provider setting pointing at it."""
    fake_provider_server.reset()
    base = fake_provider_server.base_url
    settings.GOOGLE_OAUTH_CLIENT_ID, settings.GOOGLE_OAUTH_CLIENT_SECRET = CLIENTS["google"]
    settings.GOOGLE_OAUTH_AUTHORIZE_URL = f"{base}/google/authorize"
    settings.GOOGLE_OAUTH_TOKEN_URL = f"{base}/google/token"
    settings.GMAIL_API_BASE_URL = base
    settings.MICROSOFT_OAUTH_CLIENT_ID, settings.MICROSOFT_OAUTH_CLIENT_SECRET = CLIENTS["microsoft"]
    settings.MICROSOFT_OAUTH_AUTHORIZE_URL = f"{base}/microsoft/authorize"
    settings.MICROSOFT_OAUTH_TOKEN_URL = f"{base}/microsoft/token"
    settings.GRAPH_API_BASE_URL = base
    settings.PROVIDER_HTTP_TIMEOUT_SECONDS = 5.0
    settings.EMAIL_RETRY_BASE_SECONDS = 0.05
    settings.EMAIL_MAX_ATTEMPTS = 4
    return fake_provider_server


# --- connections ------------------------------------------------------------------------------


def connect_through_browser(client: Client, fake: FakeProvider, channel: str, entity) -> requests.Response:
    """connect → the fake provider's authorize URL (over real HTTP) → callback with code & state."""
    start = client.get(f"/crm/connections/{channel}/connect", {"entityId": str(entity.pk)})
    assert start.status_code == 302, start.content[:300]
    assert start["Location"].startswith(fake.base_url)
    consent = requests.get(start["Location"], allow_redirects=False, timeout=5)
    assert consent.status_code == 302, consent.text
    callback = urlsplit(consent.headers["Location"])
    assert callback.path == f"/crm/connections/{channel}/callback"
    return client.get(f"{callback.path}?{callback.query}")


@pytest.fixture
def browser(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def make_connection(fake_provider, entity, user):
    """A connection whose tokens the fake provider honours (issued as if consent happened)."""

    def build(channel: str = "gmail", *, entity=entity, address: str | None = None) -> OutboundEmailConnection:
        provider = "google" if channel == "gmail" else "microsoft"
        with fake_provider.lock:
            token = fake_provider.issue(provider)
        mailbox = Mailbox(
            email_address=address
            or (fake_provider.state.gmail_address if channel == "gmail" else "bob.sales@outlook.example"),
            display_name="Sales Desk",
        )
        tokens = TokenSet(
            access_token=token["access_token"],
            refresh_token=token["refresh_token"],
            expires_at=None,
            scope="",
        )
        return connection_connect(entity=entity, channel=channel, mailbox=mailbox, tokens=tokens, user=user)

    return build


@pytest.fixture
def lead(entity):
    contact = factories.make_contact(entity, email="carol@customer.example", company=factories.make_company(entity))
    return Lead.objects.create(
        entity=entity,
        title="Big deal",
        company=contact.memberships.first().company,
        contact=contact,
        stage=factories.stage(entity, "new"),
        currency="USD",
        probability_pct=10,
    )


def email_body(lead, connection, **overrides) -> dict:
    body = {
        "leadId": str(lead.pk),
        "connectionId": str(connection.pk),
        "channel": connection.channel,
        "subject": "Following up",
        "htmlBody": "<p>Hello <b>Carol</b></p>",
    }
    body.update(overrides)
    return body


def make_email(lead, connection, **fields) -> OutboundEmail:
    """An email row as `email_queue` leaves it, written directly (for claim/stuck-row tests)."""
    values = {
        "entity_id": lead.entity_id,
        "lead": lead,
        "company_id": lead.company_id,
        "contact_id": lead.contact_id,
        "connection": connection,
        "channel": connection.channel,
        "from_address": connection.email_address,
        "subject": "Following up",
        "html_body": "<p>Hello</p>",
        "text_body": "Hello",
        "to_addresses": ["carol@customer.example"],
    }
    values.update(fields)
    return OutboundEmail.objects.create(**values)


# --- Celery worker ----------------------------------------------------------------------------


def _close_db_connections(**kwargs) -> None:
    # Runs in the worker thread after each task: no connection may outlive the test database.
    connections.close_all()


def _drop_broker_pools() -> None:
    """Forget the app's handles on broker pools, so the next publish uses the configured broker.

    (kombu keeps the pools themselves, keyed by broker URL; closing them would break later reuse.)
    """
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@contextlib.contextmanager
def celery_on_broker(broker_url: str = BROKER_URL):
    """The app publishing to `broker_url` on this xdist worker's queue (not eager), restored after."""
    keys = ("broker_url", "task_always_eager", "task_default_queue", "broker_connection_retry_on_startup")
    saved = {key: celery_app.conf[key] for key in keys}
    _drop_broker_pools()
    celery_app.conf.update(
        broker_url=broker_url,
        task_always_eager=False,
        task_default_queue=QUEUE,
        broker_connection_retry_on_startup=False,
    )
    try:
        yield celery_app
    finally:
        _drop_broker_pools()
        celery_app.conf.update(saved)


@contextlib.contextmanager
def running_worker(broker_url: str = BROKER_URL):
    """A real worker (solo pool, in a thread) on `broker_url`, consuming this xdist worker's queue."""
    with celery_on_broker(broker_url) as app:
        with contextlib.suppress(Exception), app.connection_for_write() as conn:
            conn.default_channel.queue_purge(QUEUE)
        task_postrun.connect(_close_db_connections, weak=False)
        try:
            with start_worker(
                app, pool="solo", concurrency=1, perform_ping_check=False, queues=[QUEUE], shutdown_timeout=20
            ) as worker:
                yield worker
        finally:
            task_postrun.disconnect(_close_db_connections)
            # The name is unique per run: leave no queue or binding behind on the shared broker.
            # (kombu's Redis channel only unbinds what it declared itself, hence declare then delete.)
            with contextlib.suppress(Exception), app.connection_for_write() as conn:
                queue = app.amqp.queues[QUEUE](conn.default_channel)
                queue.declare()
                queue.delete()


@pytest.fixture
def celery_worker(transactional_db, fake_provider):
    with running_worker() as worker:
        yield worker


def wait_for(predicate, *, timeout: float = 10.0, interval: float = 0.05, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"Timed out after {timeout}s waiting for {message}")


def wait_for_status(email_id, *statuses: str, timeout: float = 10.0) -> OutboundEmail:
    def done():
        email = OutboundEmail.objects.get(pk=email_id)
        return email if email.status in statuses else None

    return wait_for(done, timeout=timeout, message=f"email {email_id} to reach {statuses}")
