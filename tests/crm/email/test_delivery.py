"""`email_deliver` called directly (no worker), against the fake provider over real HTTP.

Retry timing and the "not claimable until due" guard, every failure path, the recipient cap,
`outbound_email_check` on lost retries and fresh vs. stuck `sending` rows, and the eager-mode
branch of `email_enqueue`. The suite's Celery is eager and these tests run inside the test
transaction, so nothing is sent unless a test calls `email_deliver` (or an eager task) itself.
"""

from __future__ import annotations

import contextlib
import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from axiomatic.celery import app as celery_app
from crm.choices import ActivityType, ConnectionStatus, EmailStatus, LeadEventKind
from crm.email import delivery
from crm.email.connections import connection_revoke
from crm.email.delivery import email_deliver, retry_delay
from crm.email.queue import email_enqueue
from crm.models import Activity, LeadEvent, OutboundEmail, OutboundEmailConnection
from crm.providers.base import MAX_RETRY_AFTER_SECONDS, parse_retry_after
from crm.tasks import send_outbound_email
from tests.crm.email.conftest import email_body, make_email
from tests.helpers import assert_error

GMAIL_SEND = "/gmail/v1/users/me/messages/send"


@pytest.fixture
def gmail(make_connection):
    return make_connection("gmail")


@pytest.fixture
def queued(lead, gmail):
    """A due `queued` email on the Gmail connection, as `email_queue` leaves it."""
    return make_email(lead, gmail)


@contextlib.contextmanager
def eager_celery():
    saved = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    try:
        yield
    finally:
        celery_app.conf.task_always_eager = saved


def _row(email) -> OutboundEmail:
    return OutboundEmail.objects.get(pk=email.pk)


def _make_due(email) -> None:
    OutboundEmail.objects.filter(pk=email.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def _failed_events(lead) -> int:
    return LeadEvent.objects.filter(lead=lead, kind=LeadEventKind.EMAIL_FAILED).count()


def _check(*args) -> dict:
    out = io.StringIO()
    call_command("outbound_email_check", *args, stdout=out)
    return json.loads(out.getvalue())


# --- retry timing and the "not claimable until due" guard --------------------------------------


def test_429_retry_after_schedules_the_retry_and_the_row_is_not_claimable_until_due(fake_provider, queued):
    fake_provider.script(
        "gmail_send", 429, headers={"Retry-After": "30"}, body={"error": {"code": 429, "message": "Slow down"}}
    )

    before = timezone.now()
    result = email_deliver(email_id=queued.pk)
    after = timezone.now()

    assert result.outcome == "retry"
    assert result.retry_in == 30
    row = _row(queued)
    assert row.status == EmailStatus.QUEUED
    assert row.attempts == 1
    assert row.claim_token is None
    assert before + timedelta(seconds=30) <= row.next_attempt_at <= after + timedelta(seconds=30)
    assert "429" in row.error
    assert fake_provider.count("POST", GMAIL_SEND) == 1

    # Right away (a duplicate delivery, or the check): not due, so nothing is claimed or sent.
    assert email_deliver(email_id=queued.pk).outcome == "skipped"
    assert fake_provider.count("POST", GMAIL_SEND) == 1
    row = _row(queued)
    assert row.status == EmailStatus.QUEUED and row.attempts == 1

    # Once due (the scheduled retry), it is sent exactly once.
    _make_due(queued)
    assert email_deliver(email_id=queued.pk).outcome == "sent"
    row = _row(queued)
    assert row.status == EmailStatus.SENT
    assert row.attempts == 2
    assert row.next_attempt_at is None and row.error == ""
    (delivered,) = fake_provider.delivered()
    assert row.provider_message_id == delivered.message_id
    assert fake_provider.count("POST", GMAIL_SEND) == 2
    assert Activity.objects.filter(lead=queued.lead, type=ActivityType.EMAIL).count() == 1
    assert email_deliver(email_id=queued.pk).outcome == "skipped"
    assert len(fake_provider.delivered()) == 1


def test_retry_after_over_ten_minutes_is_capped(fake_provider, queued):
    fake_provider.script("gmail_send", 429, headers={"Retry-After": "3600"})
    result = email_deliver(email_id=queued.pk)
    assert result.outcome == "retry"
    assert result.retry_in == MAX_RETRY_AFTER_SECONDS == 600
    assert _row(queued).next_attempt_at <= timezone.now() + timedelta(seconds=600)

    assert retry_delay(attempts=1, retry_after=3600) == 600
    assert retry_delay(attempts=5, retry_after=601) == 600
    assert retry_delay(attempts=1, retry_after=30) == 30
    assert parse_retry_after("3600") == 600 and parse_retry_after("30") == 30


def test_503_without_retry_after_backs_off_exponentially_with_jitter(fake_provider, queued, settings):
    settings.EMAIL_RETRY_BASE_SECONDS = 2
    settings.EMAIL_MAX_ATTEMPTS = 6
    for _ in range(2):
        fake_provider.script("gmail_send", 503, body={"error": {"code": 503, "message": "Backend Error"}})

    first = email_deliver(email_id=queued.pk)
    assert first.outcome == "retry"
    assert 1 <= first.retry_in <= 2  # 50–100% of base * 2**0
    assert _row(queued).attempts == 1

    _make_due(queued)
    second = email_deliver(email_id=queued.pk)
    assert second.outcome == "retry"
    assert 2 <= second.retry_in <= 4  # 50–100% of base * 2**1
    row = _row(queued)
    assert row.status == EmailStatus.QUEUED and row.attempts == 2
    assert fake_provider.delivered() == []


@pytest.mark.parametrize(
    "attempts,low,high",
    [(1, 1.0, 2.0), (2, 2.0, 4.0), (3, 4.0, 8.0), (9, 256.0, 512.0), (10, 512.0, 600.0), (12, 600.0, 600.0)],
)
def test_retry_delay_bounds(settings, monkeypatch, attempts, low, high):
    settings.EMAIL_RETRY_BASE_SECONDS = 2
    # The jitter's extremes: random() == 0 gives 50% of the step, random() → 1 gives the full step.
    monkeypatch.setattr(delivery.random, "random", lambda: 0.0)
    assert retry_delay(attempts=attempts, retry_after=None) == pytest.approx(low)
    monkeypatch.setattr(delivery.random, "random", lambda: 0.999999)
    assert retry_delay(attempts=attempts, retry_after=None) == pytest.approx(high, rel=1e-5)
    monkeypatch.undo()
    for _ in range(50):
        assert low <= retry_delay(attempts=attempts, retry_after=None) <= high


def test_giving_up_after_max_attempts_marks_failed(fake_provider, queued, settings):
    settings.EMAIL_MAX_ATTEMPTS = 2
    for _ in range(2):
        fake_provider.script("gmail_send", 503)
    assert email_deliver(email_id=queued.pk).outcome == "retry"
    _make_due(queued)
    assert email_deliver(email_id=queued.pk).outcome == "failed"
    row = _row(queued)
    assert row.status == EmailStatus.FAILED and row.attempts == 2
    assert row.error.startswith("Gave up after 2 attempts") and row.next_attempt_at is None
    assert _failed_events(queued.lead) == 1


def test_eager_task_with_a_transient_failure_does_not_retry_inline(fake_provider, queued):
    """Without a broker the task's retry is left to outbound_email_check, not run at once."""
    fake_provider.script("gmail_send", 429, headers={"Retry-After": "30"})
    with eager_celery():
        outcome = send_outbound_email.apply_async((str(queued.pk),)).get()
    assert outcome == "retry"
    assert fake_provider.count("POST", GMAIL_SEND) == 1
    assert _row(queued).status == EmailStatus.QUEUED


# --- failure paths ----------------------------------------------------------------------------


def test_permanent_4xx_fails_after_one_attempt_without_retry(fake_provider, queued):
    fake_provider.script("gmail_send", 400, body={"error": {"code": 400, "message": "Invalid To header"}})

    result = email_deliver(email_id=queued.pk)

    assert result.outcome == "failed" and result.retry_in is None
    row = _row(queued)
    assert row.status == EmailStatus.FAILED
    assert row.attempts == 1
    assert row.next_attempt_at is None
    assert "400" in row.error and "Invalid To header" in row.error
    event = LeadEvent.objects.get(lead=queued.lead, kind=LeadEventKind.EMAIL_FAILED)
    assert event.data["id"] == str(queued.pk) and event.data["status"] == "failed"
    assert event.data["error"] == row.error and event.data["attempts"] == 1
    assert not Activity.objects.filter(lead=queued.lead, type=ActivityType.EMAIL).exists()
    # Failed is final: another delivery claims nothing and calls nobody.
    assert email_deliver(email_id=queued.pk).outcome == "skipped"
    assert fake_provider.count("POST", GMAIL_SEND) == 1
    assert fake_provider.delivered() == []


def test_connection_revoked_between_queueing_and_sending_fails_without_calling_the_provider(
    fake_provider, api, lead, gmail
):
    response = api.post("/outbound-email", email_body(lead, gmail))
    assert response.status_code == 202, response.content
    email_id = response.json()["email"]["id"]
    connection_revoke(connection=OutboundEmailConnection.objects.get(pk=gmail.pk))
    requests_before = len(fake_provider.state.requests)

    assert email_deliver(email_id=email_id).outcome == "failed"

    row = OutboundEmail.objects.get(pk=email_id)
    assert row.status == EmailStatus.FAILED and row.attempts == 1
    assert "connection is revoked; reconnect it" in row.error  # refused before any token use
    assert len(fake_provider.state.requests) == requests_before  # no send, no token refresh
    assert fake_provider.state.refresh_count == 0
    assert _failed_events(lead) == 1


def test_401_even_after_a_refresh_expires_the_connection_and_fails_the_email(fake_provider, queued, gmail):
    for _ in range(2):
        fake_provider.script("gmail_send", 401, body={"error": {"code": 401, "message": "Invalid Credentials"}})

    assert email_deliver(email_id=queued.pk).outcome == "failed"

    assert fake_provider.state.refresh_count == 1  # refreshed once, not again
    assert fake_provider.count("POST", GMAIL_SEND) == 2
    gmail.refresh_from_db()
    assert gmail.status == ConnectionStatus.EXPIRED
    row = _row(queued)
    assert row.status == EmailStatus.FAILED and row.attempts == 1
    assert "401" in row.error and "after refreshing" in row.error
    assert _failed_events(queued.lead) == 1
    assert fake_provider.delivered() == []


def test_a_single_401_is_cured_by_one_refresh(fake_provider, queued, gmail):
    fake_provider.script("gmail_send", 401)
    assert email_deliver(email_id=queued.pk).outcome == "sent"
    assert fake_provider.state.refresh_count == 1
    gmail.refresh_from_db()
    assert gmail.status == ConnectionStatus.ACTIVE
    assert _row(queued).attempts == 1


def test_undecryptable_stored_tokens_fail_the_email(fake_provider, queued, gmail):
    OutboundEmailConnection.objects.filter(pk=gmail.pk).update(
        access_token_encrypted="gAAAAAgarbage-not-a-fernet-token", refresh_token_encrypted="garbage"
    )

    assert email_deliver(email_id=queued.pk).outcome == "failed"

    row = _row(queued)
    assert row.status == EmailStatus.FAILED and row.attempts == 1
    assert "cannot be decrypted" in row.error
    assert fake_provider.count("POST", GMAIL_SEND) == 0
    assert fake_provider.state.refresh_count == 0
    assert _failed_events(queued.lead) == 1


def test_more_than_100_recipients_in_all_is_400(api, lead, gmail):
    def addresses(prefix, n):
        return [f"{prefix}{i}@example.org" for i in range(n)]

    too_many = email_body(lead, gmail, to=addresses("to", 50), cc=addresses("cc", 50), bcc=addresses("bcc", 1))
    body = assert_error(api.post("/outbound-email", too_many), 400)
    assert "100" in body["error"]
    assert not OutboundEmail.objects.exists()

    at_limit = email_body(lead, gmail, to=addresses("to", 50), cc=addresses("cc", 49), bcc=addresses("bcc", 1))
    assert api.post("/outbound-email", at_limit).status_code == 202


# --- outbound_email_check ---------------------------------------------------------------------


def test_check_requeues_a_queued_row_whose_retry_was_lost(fake_provider, lead, gmail):
    now = timezone.now()
    lost = make_email(lead, gmail, attempts=1, next_attempt_at=now - timedelta(hours=1))
    scheduled = make_email(lead, gmail, attempts=1, next_attempt_at=now + timedelta(seconds=30))
    just_due = make_email(lead, gmail, attempts=1, next_attempt_at=now - timedelta(seconds=10))
    fresh = make_email(lead, gmail)  # just queued: its task is still on its way

    with eager_celery():  # the re-queued task runs at once
        report = _check()

    assert report["requeued"] == [str(lost.pk)]
    assert report["stuckSending"] == [] and report["markedFailed"] == []
    row = _row(lost)
    assert row.status == EmailStatus.SENT and row.attempts == 2
    assert len(fake_provider.delivered()) == 1
    for untouched in (scheduled, just_due, fresh):
        row = _row(untouched)
        assert row.status == EmailStatus.QUEUED and row.attempts == untouched.attempts


def test_check_with_no_requeue_requeues_nothing(fake_provider, lead, gmail):
    lost = make_email(lead, gmail, attempts=1, next_attempt_at=timezone.now() - timedelta(hours=1))
    never_queued = make_email(lead, gmail)
    OutboundEmail.objects.filter(pk=never_queued.pk).update(created_at=timezone.now() - timedelta(hours=1))

    with eager_celery():
        report = _check("--no-requeue")

    assert report == {"stuckSending": [], "requeued": [], "markedFailed": []}
    for email in (lost, never_queued):
        assert _row(email).status == EmailStatus.QUEUED
    assert fake_provider.count("POST", GMAIL_SEND) == 0

    with eager_celery():
        report = _check()
    assert sorted(report["requeued"]) == sorted([str(lost.pk), str(never_queued.pk)])


def test_check_reports_an_old_sending_row_but_not_a_freshly_claimed_one(fake_provider, lead, gmail):
    now = timezone.now()
    fresh = make_email(lead, gmail, status=EmailStatus.SENDING, attempts=1, claimed_at=now - timedelta(seconds=5))
    stuck = make_email(lead, gmail, status=EmailStatus.SENDING, attempts=1, claimed_at=now - timedelta(hours=1))

    report = _check()

    assert [item["id"] for item in report["stuckSending"]] == [str(stuck.pk)]
    assert report["stuckSending"][0]["entityId"] == str(lead.entity_id)
    assert report["requeued"] == []

    report = _check("--fail-stuck")
    assert report["markedFailed"] == [str(stuck.pk)]
    assert _row(stuck).status == EmailStatus.FAILED
    assert _row(fresh).status == EmailStatus.SENDING  # a live worker may be sending it right now
    assert fake_provider.count("POST", GMAIL_SEND) == 0


def test_check_sending_minutes_flag_widens_the_window(fake_provider, lead, gmail):
    row = make_email(
        lead, gmail, status=EmailStatus.SENDING, attempts=1, claimed_at=timezone.now() - timedelta(minutes=3)
    )
    assert _check()["stuckSending"] == []
    assert [item["id"] for item in _check("--sending-minutes", "1")["stuckSending"]] == [str(row.pk)]


# --- email_enqueue ----------------------------------------------------------------------------


def test_enqueue_with_countdown_in_eager_mode_returns_false_and_sends_nothing(fake_provider, queued):
    with eager_celery():
        assert email_enqueue(email_id=str(queued.pk), countdown=5) is False
    assert fake_provider.count("POST", GMAIL_SEND) == 0
    row = _row(queued)
    assert row.status == EmailStatus.QUEUED and row.attempts == 0

    # Without a countdown the eager task runs at once (so the branch above is what held it back).
    with eager_celery():
        assert email_enqueue(email_id=str(queued.pk)) is True
    assert _row(queued).status == EmailStatus.SENT
    assert len(fake_provider.delivered()) == 1
