"""The whole path with a real Celery worker on Redis and the fake provider over HTTP.

POST /outbound-email → row committed → task on the broker (id only) → worker claims the row →
Gmail API / Microsoft Graph → `sent` (Activity + timeline) or `failed`.
"""

from __future__ import annotations

import email
import email.policy
import io
import json
import logging
import threading
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connections
from django.utils import timezone

from crm.choices import ActivityType, ConnectionStatus, EmailStatus, LeadEventKind
from crm.email.delivery import email_deliver
from crm.models import Activity, LeadEvent, OutboundEmail, OutboundEmailConnection
from crm.tasks import send_outbound_email
from tests.crm.email.conftest import (
    celery_on_broker,
    connect_through_browser,
    email_body,
    make_email,
    running_worker,
    wait_for,
    wait_for_status,
)

pytestmark = [pytest.mark.worker]

XSS_HTML = (
    '<p onclick="steal()">Hi <b>Carol</b>, see <a href="javascript:alert(1)">this</a> and '
    '<a href="https://example.com/offer">the offer</a>.</p><script>alert("x")</script>'
    '<img src="https://example.com/x.png" onerror="boom()">'
)


def _post(api, body, **kwargs):
    response = api.post("/outbound-email", body, **kwargs)
    assert response.status_code == 202, response.content
    return response.json()["email"]


def _parse(raw: bytes):
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_gmail_connect_then_send_delivers_sanitised_multipart(celery_worker, fake_provider, api, browser, entity, lead):
    connect_through_browser(browser, fake_provider, "gmail", entity)
    connection = OutboundEmailConnection.objects.get(entity=entity, channel="gmail")

    sent = _post(
        api, email_body(lead, connection, htmlBody=XSS_HTML, cc=["Dan <dan@customer.example>"], bcc=["eve@x.example"])
    )
    row = wait_for_status(sent["id"], EmailStatus.SENT, EmailStatus.FAILED)

    assert row.status == EmailStatus.SENT, row.error
    assert row.attempts == 1
    (delivered,) = fake_provider.delivered("gmail")
    assert row.provider_message_id == delivered.message_id
    assert row.sent_at is not None

    message = _parse(delivered.raw)
    assert message["To"] == "carol@customer.example"
    assert message["Cc"] == "Dan <dan@customer.example>"
    assert message["Bcc"] == "eve@x.example"  # Gmail strips it on delivery
    assert message["From"] == "alice.sales@gmail.example"
    assert message["Subject"] == "Following up"
    assert message["Message-ID"] == f"<{row.pk}@gmail.example>"
    html = message.get_body(preferencelist=("html",)).get_content()
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "<b>Carol</b>" in html and "https://example.com/offer" in html
    for forbidden in ("<script", "onclick", "onerror", "javascript:", "alert("):
        assert forbidden not in html
    assert "Hi Carol, see this and the offer (https://example.com/offer)." in text

    activity = Activity.objects.get(lead=lead, type=ActivityType.EMAIL)
    assert activity.status == "completed" and activity.subject == "Following up"
    assert activity.company_id == lead.company_id and activity.contact_id == lead.contact_id
    kinds = list(LeadEvent.objects.filter(lead=lead).order_by("occurred_at").values_list("kind", flat=True))
    assert kinds[-2:] == [LeadEventKind.EMAIL_QUEUED, LeadEventKind.EMAIL_SENT]
    connection.refresh_from_db()
    assert connection.last_used_at is not None

    shown = api.get(f"/outbound-email/{row.pk}").json()["email"]
    assert shown["status"] == "sent"
    assert shown["providerMessageId"] == delivered.message_id
    assert shown["sentAt"].endswith("Z") and shown["error"] is None and shown["attempts"] == 1


def test_outlook_connect_then_send_through_draft(celery_worker, fake_provider, api, browser, entity, lead):
    connect_through_browser(browser, fake_provider, "outlook", entity)
    connection = OutboundEmailConnection.objects.get(entity=entity, channel="outlook")
    assert connection.email_address == "bob.sales@outlook.example"
    assert connection.display_name == "Bob Sales"

    sent = _post(api, email_body(lead, connection, htmlBody=XSS_HTML, to=["Carol <carol@customer.example>"]))
    row = wait_for_status(sent["id"], EmailStatus.SENT, EmailStatus.FAILED)

    assert row.status == EmailStatus.SENT, row.error
    (delivered,) = fake_provider.delivered("outlook")
    assert row.provider_message_id == delivered.message_id  # the draft's (immutable) id
    graph = delivered.graph
    assert graph["subject"] == "Following up"
    assert graph["toRecipients"] == [{"emailAddress": {"address": "carol@customer.example", "name": "Carol"}}]
    assert graph["body"]["contentType"] == "HTML"
    for forbidden in ("<script", "onclick", "javascript:"):
        assert forbidden not in graph["body"]["content"]
    assert LeadEvent.objects.filter(lead=lead, kind=LeadEventKind.EMAIL_SENT).count() == 1


def test_gmail_429_is_retried_after_retry_after_and_delivered_once(
    celery_worker, fake_provider, make_connection, api, lead
):
    connection = make_connection("gmail")
    fake_provider.script(
        "gmail_send",
        429,
        headers={"Retry-After": "1"},
        body={"error": {"code": 429, "message": "Too many concurrent requests for user."}},
    )
    sent = _post(api, email_body(lead, connection))

    row = wait_for_status(sent["id"], EmailStatus.SENT, EmailStatus.FAILED, timeout=15)
    assert row.status == EmailStatus.SENT, row.error
    assert row.attempts == 2
    assert len(fake_provider.delivered()) == 1
    assert fake_provider.count("POST", "/gmail/v1/users/me/messages/send") == 2


def test_server_errors_back_off_then_fail_after_max_attempts(
    celery_worker, fake_provider, make_connection, api, lead, settings
):
    settings.EMAIL_MAX_ATTEMPTS = 3
    connection = make_connection("gmail")
    for _ in range(3):
        fake_provider.script("gmail_send", 503, body={"error": {"code": 503, "message": "Backend Error"}})
    sent = _post(api, email_body(lead, connection))

    row = wait_for_status(sent["id"], EmailStatus.FAILED, EmailStatus.SENT, timeout=15)
    assert row.status == EmailStatus.FAILED
    assert row.attempts == 3
    assert "503" in row.error and "Backend Error" in row.error
    assert fake_provider.delivered() == []
    event = LeadEvent.objects.get(lead=lead, kind=LeadEventKind.EMAIL_FAILED)
    assert event.data["error"] == row.error and event.data["attempts"] == 3
    assert not Activity.objects.filter(lead=lead, type=ActivityType.EMAIL).exists()


def test_outlook_send_failure_retries_the_same_draft(celery_worker, fake_provider, make_connection, api, lead):
    connection = make_connection("outlook")
    fake_provider.script("graph_send", 503, body={"error": {"code": "ServiceUnavailable", "message": "Try later"}})
    sent = _post(api, email_body(lead, connection))

    row = wait_for_status(sent["id"], EmailStatus.SENT, EmailStatus.FAILED, timeout=15)
    assert row.status == EmailStatus.SENT, row.error
    assert row.attempts == 2
    assert fake_provider.count("POST", "/v1.0/me/messages") == 3  # one draft, two sends
    assert len(fake_provider.state.drafts) == 1
    assert len(fake_provider.delivered()) == 1


def test_expired_access_token_is_refreshed_once_and_sent(
    celery_worker, fake_provider, make_connection, api, lead, caplog
):
    caplog.set_level(logging.DEBUG)
    connection = make_connection("gmail")
    old_token = connection.access_token
    fake_provider.expire_access_tokens()
    sent = _post(api, email_body(lead, connection))

    row = wait_for_status(sent["id"], EmailStatus.SENT, EmailStatus.FAILED)
    assert row.status == EmailStatus.SENT, row.error
    assert row.attempts == 1
    assert fake_provider.state.refresh_count == 1
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.ACTIVE
    assert connection.access_token not in ("", old_token)
    assert connection.token_expires_at is not None
    for token in fake_provider.state.seen_tokens:
        assert token not in caplog.text


def test_refused_refresh_fails_the_email_and_expires_the_connection(
    celery_worker, fake_provider, make_connection, api, lead
):
    connection = make_connection("outlook")
    fake_provider.expire_access_tokens()
    fake_provider.state.refuse_refresh = True
    sent = _post(api, email_body(lead, connection))

    row = wait_for_status(sent["id"], EmailStatus.FAILED, EmailStatus.SENT)
    assert row.status == EmailStatus.FAILED
    assert "invalid_grant" in row.error
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.EXPIRED
    assert LeadEvent.objects.filter(lead=lead, kind=LeadEventKind.EMAIL_FAILED).exists()
    assert fake_provider.delivered() == []
    # An expired connection is refused up front from now on.
    again = api.post("/outbound-email", email_body(lead, connection))
    assert again.status_code == 400


def test_proactive_refresh_when_the_stored_token_is_past_expiry(
    celery_worker, fake_provider, make_connection, api, lead
):
    connection = make_connection("gmail")
    OutboundEmailConnection.objects.filter(pk=connection.pk).update(
        token_expires_at=timezone.now() - timedelta(minutes=1)
    )
    sent = _post(api, email_body(lead, connection))
    row = wait_for_status(sent["id"], EmailStatus.SENT, EmailStatus.FAILED)
    assert row.status == EmailStatus.SENT, row.error
    assert fake_provider.state.refresh_count == 1
    assert fake_provider.count("POST", "/gmail/v1/users/me/messages/send") == 1  # no 401 round trip


def test_the_same_task_delivered_three_times_sends_one_message(
    celery_worker, fake_provider, make_connection, api, lead
):
    from celery.signals import task_postrun

    runs: list[str] = []
    lock = threading.Lock()

    def count(sender=None, **kwargs):
        if sender is not None and sender.name == "crm.send_outbound_email":
            with lock:
                runs.append(kwargs.get("retval"))

    task_postrun.connect(count, weak=False)
    try:
        connection = make_connection("gmail")
        fake_provider.state.send_delay = 0.3
        sent = _post(api, email_body(lead, connection))
        send_outbound_email.apply_async((sent["id"],))
        send_outbound_email.apply_async((sent["id"],))
        wait_for(lambda: len(runs) >= 3, message="three task runs")
    finally:
        task_postrun.disconnect(count)

    assert sorted(runs) == ["sent", "skipped", "skipped"]
    assert len(fake_provider.delivered()) == 1
    row = OutboundEmail.objects.get(pk=sent["id"])
    assert row.status == EmailStatus.SENT and row.attempts == 1
    assert Activity.objects.filter(lead=lead, type=ActivityType.EMAIL).count() == 1


def test_two_workers_racing_for_one_email_send_it_once(transactional_db, fake_provider, make_connection, lead):
    """Two deliveries of one email running at the same time (two workers): only the claim holder sends."""
    connection = make_connection("gmail")
    fake_provider.state.send_delay = 0.5
    row = make_email(lead, connection)
    results = []

    def deliver():
        try:
            results.append(email_deliver(email_id=row.pk).outcome)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()
    assert sorted(results) == ["sent", "skipped"]
    assert len(fake_provider.delivered()) == 1
    assert OutboundEmail.objects.get(pk=row.pk).attempts == 1


def test_dead_broker_keeps_the_row_queued_and_the_check_sends_it_later(
    transactional_db, fake_provider, make_connection, api, lead
):
    connection = make_connection("gmail")
    with celery_on_broker("redis://127.0.0.1:1/0"):  # nothing listens there
        response = api.post("/outbound-email", email_body(lead, connection))
    assert response.status_code == 202, response.content
    email_id = response.json()["email"]["id"]
    row = OutboundEmail.objects.get(pk=email_id)
    assert row.status == EmailStatus.QUEUED and row.attempts == 0
    assert fake_provider.delivered() == []

    with running_worker():
        call_command("outbound_email_check", "--queued-minutes", "0", stdout=io.StringIO())
        row = wait_for_status(email_id, EmailStatus.SENT, EmailStatus.FAILED)
    assert row.status == EmailStatus.SENT, row.error
    assert len(fake_provider.delivered()) == 1


def test_stuck_sending_rows_are_reported_not_resent(transactional_db, fake_provider, make_connection, lead, capsys):
    connection = make_connection("gmail")
    # A worker died mid-send an hour ago:
    row = make_email(
        lead, connection, status=EmailStatus.SENDING, attempts=1, claimed_at=timezone.now() - timedelta(hours=1)
    )

    call_command("outbound_email_check")
    report = json.loads(capsys.readouterr().out)
    assert [item["id"] for item in report["stuckSending"]] == [str(row.pk)]
    assert report["requeued"] == [] and report["markedFailed"] == []
    assert OutboundEmail.objects.get(pk=row.pk).status == EmailStatus.SENDING
    assert email_deliver(email_id=row.pk).outcome == "skipped"
    assert fake_provider.delivered() == []

    call_command("outbound_email_check", "--fail-stuck")
    assert json.loads(capsys.readouterr().out)["markedFailed"] == [str(row.pk)]
    failed = OutboundEmail.objects.get(pk=row.pk)
    assert failed.status == EmailStatus.FAILED and "unknown" in failed.error
    assert LeadEvent.objects.filter(lead=lead, kind=LeadEventKind.EMAIL_FAILED).count() == 1
