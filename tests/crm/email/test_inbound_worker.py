"""Inbound sync end to end on a real Celery worker (Redis broker) against the fake providers.

The API sends an email, the customer answers, the beat schedule (or `POST …/sync`) reads the
mailbox, and the reply is on the lead; a worker process killed mid-sync loses and duplicates
nothing; one worker syncs 100 mailboxes with 20 new messages each (the benchmark figure is printed).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from celery.beat import EmbeddedService
from django.conf import settings as django_settings
from django.db import connection as db_connection
from django.utils import timezone

from axiomatic.celery import app as celery_app
from axiomatic.models import Change
from axiomatic.ops import database as ops_database
from crm.choices import ActivityDirection, EmailStatus
from crm.models import Activity, LeadEvent, OutboundEmail, OutboundEmailConnection
from tests import factories
from tests.crm.email.conftest import BROKER_URL, QUEUE, celery_on_broker, email_body, wait_for, wait_for_status
from tests.crm.email.inbound_support import connect_mailbox, receive, sync_now

pytestmark = [pytest.mark.worker]

ROOT = Path(__file__).resolve().parents[3]


def _inbound(entity):
    return Activity.objects.filter(entity=entity, direction=ActivityDirection.INBOUND)


def _idle(connection_ids) -> bool:
    """Every mailbox synced at least once and none is being synced."""
    rows = OutboundEmailConnection.objects.filter(pk__in=connection_ids)
    return all(row.sync_lease_token is None and row.last_synced_at is not None for row in rows)


@pytest.mark.parametrize("channel", ["gmail", "outlook"])
def test_a_reply_to_an_email_sent_through_the_api_appears_on_the_lead(
    celery_worker, fake_provider, api, entity, user, lead, channel
):
    connection = connect_mailbox(fake_provider, entity=entity, user=user, channel=channel)
    assert api.post(f"/outbound-email-connections/{connection.pk}/sync", {}).status_code == 202  # first: from now
    wait_for(lambda: _idle([connection.pk]), message="the first sync")

    sent = api.post("/outbound-email", email_body(lead, connection)).json()["email"]
    row = wait_for_status(sent["id"], EmailStatus.SENT, EmailStatus.FAILED)
    assert row.status == EmailStatus.SENT, row.error
    receive(
        fake_provider,
        connection,
        sender="Carol <carol@customer.example>",
        to=connection.email_address,
        thread_id=row.provider_thread_id,
        text="Monday works for me.",
    )

    assert api.post(f"/outbound-email-connections/{connection.pk}/sync", {}).status_code == 202
    wait_for(lambda: _inbound(entity).exists(), message="the reply to be recorded")

    timeline = api.get(f"/leads/{lead.pk}/timeline").json()["timeline"]
    (received,) = [event for event in timeline if event["kind"] == "email_received"]
    assert received["data"]["body"] == "Monday works for me."
    email = api.get(f"/outbound-email/{row.pk}").json()["email"]
    assert email["replyCount"] == 1 and email["repliedAt"] is not None
    shown = api.get("/outbound-email-connections").json()["connections"][0]
    assert shown["lastSyncedAt"] is not None and shown["lastSyncError"] is None


def test_the_beat_schedule_fans_out_one_sync_per_due_mailbox_and_a_bad_one_delays_none(
    celery_worker, fake_provider, entity, user, lead, tmp_path
):
    schedule = dict(celery_app.conf.beat_schedule)
    entry = schedule["crm-sync-mailboxes"]
    assert entry["task"] == "crm.sync_mailboxes"
    assert entry["schedule"] == float(django_settings.EMAIL_SYNC_INTERVAL_SECONDS)

    good = [
        connect_mailbox(fake_provider, entity=entity, user=user, channel="gmail", address="one@gmail.example"),
        connect_mailbox(fake_provider, entity=entity, user=user, channel="outlook", address="two@outlook.example"),
    ]
    bad = connect_mailbox(fake_provider, entity=entity, user=user, channel="gmail", address="bad@gmail.example")
    off = connect_mailbox(fake_provider, entity=entity, user=user, channel="gmail", address="off@gmail.example")
    for connection in (*good, bad, off):
        sync_now(connection)
    OutboundEmailConnection.objects.filter(pk=off.pk).update(sync_enabled=False)
    OutboundEmailConnection.objects.update(next_sync_at=None, last_synced_at=None)  # all due now
    for connection in (*good, bad, off):
        receive(
            fake_provider,
            connection,
            sender="carol@customer.example",
            to=connection.email_address,
            subject=f"Hello {connection.email_address}",
        )
    # The bad mailbox's provider is failing, slowly.
    fake_provider.script(
        "gmail_history", 503, body={"error": {"code": 503, "message": "Backend Error"}}, mailbox=bad.email_address
    )

    # The real schedule entry, ticking every second instead of every interval.
    beat = EmbeddedService(celery_app, thread=True, max_interval=0.5, schedule_filename=str(tmp_path / "beat"))
    celery_app.conf.beat_schedule = {"crm-sync-mailboxes": {**entry, "schedule": 1.0}}
    process_role = ops_database._role  # beat_init makes this process a task process: put it back after
    try:
        beat.start()
        wait_for(
            lambda: _idle([c.pk for c in good]) and _inbound(entity).count() >= 2,
            timeout=20,
            message="the good mailboxes to be synced by the beat's fan-out",
        )
        wait_for(
            lambda: OutboundEmailConnection.objects.get(pk=bad.pk).last_sync_error,
            timeout=20,
            message="the bad mailbox's error",
        )
    finally:
        beat.stop()
        celery_app.conf.beat_schedule = schedule
        ops_database.set_process_role(process_role)

    subjects = set(_inbound(entity).values_list("subject", flat=True))
    assert {"Hello one@gmail.example", "Hello two@outlook.example"} <= subjects
    assert "Hello off@gmail.example" not in subjects
    bad.refresh_from_db()
    assert "503" in bad.last_sync_error and bad.next_sync_at > timezone.now() + timedelta(seconds=60)
    assert OutboundEmailConnection.objects.get(pk=off.pk).last_synced_at is None


def _worker_process(fake_provider) -> subprocess.Popen:
    """`celery -A axiomatic worker` as its own process, on the test database and this run's queue."""
    base = fake_provider.base_url
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": "postgres://{USER}@{HOST}:{PORT}/{NAME}".format(
            **{k: db_connection.settings_dict[k] or "" for k in ("USER", "HOST", "PORT", "NAME")}
        ),
        "CELERY_BROKER_URL": BROKER_URL,
        "GOOGLE_OAUTH_CLIENT_ID": "google-client-id",
        "GOOGLE_OAUTH_CLIENT_SECRET": "google-client-secret",
        "GOOGLE_OAUTH_TOKEN_URL": f"{base}/google/token",
        "GMAIL_API_BASE_URL": base,
        "MICROSOFT_OAUTH_CLIENT_ID": "microsoft-client-id",
        "MICROSOFT_OAUTH_CLIENT_SECRET": "microsoft-client-secret",
        "MICROSOFT_OAUTH_TOKEN_URL": f"{base}/microsoft/token",
        "GRAPH_API_BASE_URL": base,
    }
    if db_connection.settings_dict.get("PASSWORD"):
        env["DATABASE_URL"] = env["DATABASE_URL"].replace("@", f":{db_connection.settings_dict['PASSWORD']}@", 1)
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "axiomatic",
        "worker",
        "--pool=solo",
        "-Q",
        QUEUE,
        "--without-heartbeat",
        "--without-gossip",
        "--without-mingle",
        "--loglevel=WARNING",
    ]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_worker_killed_mid_sync_loses_and_duplicates_nothing(transactional_db, fake_provider, entity, user, lead):
    from crm.tasks import sync_mailbox

    connection = connect_mailbox(fake_provider, entity=entity, user=user)
    sync_now(connection)
    fake_provider.state.page_size = 5
    fake_provider.state.get_delay = 0.4  # every page takes a while: the kill lands inside the sync
    for n in range(30):
        receive(
            fake_provider,
            connection,
            sender="carol@customer.example",
            to=connection.email_address,
            subject=f"Message {n:02d}",
        )
    OutboundEmailConnection.objects.filter(pk=connection.pk).update(next_sync_at=None)

    worker = _worker_process(fake_provider)
    try:
        with celery_on_broker():
            sync_mailbox.apply_async((str(connection.pk),))
        wait_for(lambda: _inbound(entity).count() >= 5, timeout=60, message="the first pages to be recorded")
        worker.send_signal(signal.SIGKILL)  # no warm shutdown: mid-page, lease held
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
    recorded_before = _inbound(entity).count()
    assert 5 <= recorded_before < 30, recorded_before
    connection.refresh_from_db()
    assert connection.sync_lease_token is not None  # the dead worker's lease

    # Until the lease lapses nobody else syncs the mailbox; afterwards the next run resumes.
    assert sync_now(connection).outcome == "skipped"
    OutboundEmailConnection.objects.filter(pk=connection.pk).update(sync_lease_until=timezone.now())
    fake_provider.state.get_delay = 0.0
    result = sync_now(connection)
    assert result.outcome == "synced"

    subjects = list(_inbound(entity).order_by("subject").values_list("subject", flat=True))
    assert subjects == [f"Message {n:02d}" for n in range(30)]  # none lost, none twice
    created = Change.objects.filter(entity_id=entity.pk, type="activity.created").values_list("object_id", flat=True)
    assert sorted(created) == sorted(str(pk) for pk in _inbound(entity).values_list("pk", flat=True))


def test_one_worker_syncs_100_mailboxes_with_20_new_messages_each(celery_worker, fake_provider, entity, user, lead):
    from crm.tasks import sync_mailboxes

    fake_provider.state.page_size = 50
    contacts = [factories.make_contact(entity, email=f"buyer{n}@customer.example") for n in range(20)]
    connections = []
    for n in range(100):
        channel = "gmail" if n % 2 else "outlook"
        address = f"seller{n}@{'gmail' if channel == 'gmail' else 'outlook'}.example"
        connections.append(connect_mailbox(fake_provider, entity=entity, user=user, channel=channel, address=address))
    for connection in connections:
        sync_now(connection)
    ids = [c.pk for c in connections]
    OutboundEmailConnection.objects.filter(pk__in=ids).update(next_sync_at=None, last_synced_at=None)
    for connection in connections:
        for n, contact in enumerate(contacts):
            receive(
                fake_provider,
                connection,
                sender=contact.email,
                to=connection.email_address,
                subject=f"Message {n}",
                text="Thanks! " * 50,
            )

    started = time.monotonic()
    sync_mailboxes.delay()  # what the beat sends
    wait_for(
        lambda: _idle(ids) and _inbound(entity).count() == 2000,
        timeout=120,
        interval=0.2,
        message="100 mailboxes to be synced",
    )
    elapsed = time.monotonic() - started

    print(f"\nBENCH inbound sync: 100 mailboxes x 20 new messages = 2000 recorded by one worker in {elapsed:.1f} s")
    assert not OutboundEmailConnection.objects.filter(pk__in=ids).exclude(last_sync_error="").exists()
    assert LeadEvent.objects.filter(entity=entity).count() == 0  # no outbound email answered: no lead
    assert OutboundEmail.objects.count() == 0
    # The figure is a benchmark (docs/performance.md), not asserted: the target is 30 s on loopback.
