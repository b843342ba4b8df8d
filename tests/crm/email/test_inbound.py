"""Inbound sync against the fake Gmail and Graph APIs over HTTP on 127.0.0.1 (crm.email.inbound)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import connection as connection_db
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from axiomatic.models import Change
from crm.choices import ActivityDirection, ActivityType, ConnectionStatus, LeadEventKind
from crm.email.delivery import email_deliver
from crm.email.inbound import connections_due_for_sync
from crm.models import Activity, LeadEvent, OutboundEmailConnection
from tests import factories
from tests.crm.email.conftest import make_email
from tests.crm.email.inbound_support import connect_mailbox, receive, sync_now

CHANNELS = ["gmail", "outlook"]


@pytest.fixture
def carol(entity):
    company = factories.make_company(entity, name="Customer Inc")
    return factories.make_contact(entity, email="carol@customer.example", first_name="Carol", company=company)


def inbound(entity):
    return Activity.objects.filter(entity=entity, direction=ActivityDirection.INBOUND)


@pytest.mark.parametrize("channel", CHANNELS)
def test_first_sync_starts_from_now(fake_provider, entity, user, carol, channel):
    connection = connect_mailbox(fake_provider, entity=entity, user=user, channel=channel)
    receive(fake_provider, connection, sender="carol@customer.example", to=connection.email_address, subject="Old")

    first = sync_now(connection)
    assert first.outcome == "synced"
    assert inbound(entity).count() == 0

    receive(fake_provider, connection, sender="carol@customer.example", to=connection.email_address, subject="New")
    second = sync_now(connection)
    assert second.outcome == "synced" and second.recorded == 1
    (activity,) = inbound(entity)
    assert activity.subject == "New" and activity.type == ActivityType.EMAIL
    assert activity.contact_id == carol.pk


def test_only_mail_that_concerns_a_contact_is_recorded(fake_provider, entity, user, carol):
    dan = factories.make_contact(entity, email="dan@partner.example", first_name="Dan")
    connection = connect_mailbox(fake_provider, entity=entity, user=user)
    sync_now(connection)
    own = connection.email_address
    receive(fake_provider, connection, sender="Carol <Carol@Customer.example>", to=own, subject="From a contact")
    receive(fake_provider, connection, sender="spam@nowhere.example", to=own, subject="Newsletter")
    receive(fake_provider, connection, sender="eve@nowhere.example", to=own, cc="dan@partner.example", subject="Cc")

    result = sync_now(connection)

    assert result.recorded == 2
    rows = {a.subject: a for a in inbound(entity)}
    assert set(rows) == {"From a contact", "Cc"}
    assert rows["From a contact"].contact_id == carol.pk
    assert rows["From a contact"].company_id == carol.memberships.get().company_id
    assert rows["From a contact"].lead_id is None
    assert rows["Cc"].contact_id == dan.pk and rows["Cc"].company_id is None
    assert not Activity.objects.filter(subject="Newsletter").exists()


def _sent_email(lead, connection):
    """An email about `lead` really sent through the fake provider (its thread id stored)."""
    row = make_email(lead, connection)
    assert email_deliver(email_id=row.pk).outcome == "sent"
    row.refresh_from_db()
    assert row.provider_thread_id
    return row


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_reply_links_to_the_lead_and_marks_the_outbound_email(fake_provider, api, entity, user, lead, channel):
    connection = connect_mailbox(fake_provider, entity=entity, user=user, channel=channel)
    sync_now(connection)
    sent = _sent_email(lead, connection)
    seq_before = Change.objects.filter(entity_id=entity.pk).count()

    receive(
        fake_provider,
        connection,
        sender="carol@customer.example",
        to=connection.email_address,
        thread_id=sent.provider_thread_id,
        in_reply_to=f"<{sent.pk}@example.invalid>",
        text="Yes, let's talk on Monday.",
    )
    assert sync_now(connection).recorded == 1

    activity = inbound(entity).get()
    assert activity.lead_id == lead.pk
    assert activity.contact_id == lead.contact_id and activity.company_id == lead.company_id
    assert activity.body == "Yes, let's talk on Monday."
    sent.refresh_from_db()
    assert sent.reply_count == 1 and sent.replied_at == activity.occurred_at
    event = LeadEvent.objects.get(lead=lead, kind=LeadEventKind.EMAIL_RECEIVED)
    assert event.data["id"] == str(activity.pk) and event.data["direction"] == "inbound"
    assert event.data["outboundEmailId"] == str(sent.pk)
    new_changes = list(Change.objects.filter(entity_id=entity.pk).order_by("seq")[seq_before:])
    assert [c.type for c in new_changes] == ["activity.created", "outbound_email.replied"]
    replied = new_changes[1]
    assert replied.object_id == str(sent.pk)
    data = json.loads(replied.data) if isinstance(replied.data, str) else replied.data
    assert data["replyCount"] == 1 and data["repliedAt"].endswith("Z")
    assert replied.previous is None  # `previous` is for updated and stage_changed only

    # The API shows it: the email, the activity, the lead's timeline.
    assert api.get(f"/outbound-email/{sent.pk}").json()["email"]["replyCount"] == 1
    timeline = api.get(f"/leads/{lead.pk}/timeline").json()["timeline"]
    (received,) = [event for event in timeline if event["kind"] == "email_received"]
    assert received["data"]["direction"] == "inbound" and received["data"]["leadId"] == str(lead.pk)

    # A second reply counts; repliedAt stays the first.
    first_replied_at = sent.replied_at
    receive(
        fake_provider,
        connection,
        sender="carol@customer.example",
        to=connection.email_address,
        thread_id=sent.provider_thread_id,
        subject="Re: Re: Following up",
    )
    sync_now(connection)
    sent.refresh_from_db()
    assert sent.reply_count == 2 and sent.replied_at == first_replied_at


def test_a_reply_in_another_thread_is_matched_by_its_references(fake_provider, entity, user, lead):
    connection = connect_mailbox(fake_provider, entity=entity, user=user)
    sync_now(connection)
    sent = _sent_email(lead, connection)
    receive(
        fake_provider,
        connection,
        sender="carol@customer.example",
        to=connection.email_address,
        in_reply_to=f"<{sent.pk}@gmail.example>",
    )
    sync_now(connection)
    assert inbound(entity).get().lead_id == lead.pk
    sent.refresh_from_db()
    assert sent.reply_count == 1


def test_our_own_sent_copies_are_not_recorded_as_received(fake_provider, entity, user, lead):
    connection = connect_mailbox(fake_provider, entity=entity, user=user)
    sync_now(connection)
    _sent_email(lead, connection)  # Gmail lists the sent copy in the history (label SENT)
    assert sync_now(connection).recorded == 0
    assert not inbound(entity).exists()


def test_the_same_message_in_two_mailboxes_is_recorded_once(fake_provider, entity, user, lead):
    gmail = connect_mailbox(fake_provider, entity=entity, user=user, channel="gmail")
    outlook = connect_mailbox(fake_provider, entity=entity, user=user, channel="outlook")
    sync_now(gmail), sync_now(outlook)
    for connection in (gmail, outlook):
        receive(
            fake_provider,
            connection,
            sender="carol@customer.example",
            to="team@us.example",
            message_id="<same-1@customer.example>",
        )
    assert sync_now(gmail).recorded == 1
    assert sync_now(outlook).recorded == 0
    assert inbound(entity).count() == 1
    assert inbound(entity).get().message_key == "mid:same-1@customer.example"


def test_resync_and_a_repeated_page_record_nothing_new(fake_provider, entity, user, lead):
    connection = connect_mailbox(fake_provider, entity=entity, user=user)
    sync_now(connection)
    connection.refresh_from_db()
    start_cursor = connection.sync_cursor
    for n in range(3):
        receive(
            fake_provider,
            connection,
            sender="carol@customer.example",
            to=connection.email_address,
            subject=f"Message {n}",
        )
    assert sync_now(connection).recorded == 3
    changes_after = Change.objects.filter(entity_id=entity.pk).count()

    assert sync_now(connection).recorded == 0
    # The cursor put back (a page read again after a crash before its cursor was stored).
    OutboundEmailConnection.objects.filter(pk=connection.pk).update(sync_cursor=start_cursor)
    again = sync_now(connection)
    assert again.outcome == "synced" and again.recorded == 0
    assert inbound(entity).count() == 3
    assert Change.objects.filter(entity_id=entity.pk).count() == changes_after


def test_many_pages_are_followed_and_bounded_per_run(fake_provider, entity, user, lead, settings):
    settings.EMAIL_SYNC_MAX_PAGES = 2
    fake_provider.state.page_size = 3
    connection = connect_mailbox(fake_provider, entity=entity, user=user)
    sync_now(connection)
    for n in range(10):
        receive(
            fake_provider,
            connection,
            sender="carol@customer.example",
            to=connection.email_address,
            subject=f"Message {n}",
        )
    first = sync_now(connection)
    assert (first.recorded, first.pages, first.more) == (6, 2, True)
    second = sync_now(connection)
    assert (second.recorded, second.more) == (4, False)
    assert inbound(entity).count() == 10


@pytest.mark.parametrize("channel", CHANNELS)
def test_an_expired_history_restarts_from_now_and_reports_the_gap(fake_provider, entity, user, lead, channel):
    connection = connect_mailbox(fake_provider, entity=entity, user=user, channel=channel)
    sync_now(connection)
    receive(fake_provider, connection, sender="carol@customer.example", to=connection.email_address, subject="Lost")
    with fake_provider.lock:  # the provider forgot everything up to now
        if channel == "gmail":
            box = fake_provider.state.gmail_boxes[connection.email_address]
            box.oldest_history = box.history_id  # only the present is still known
        else:
            box = fake_provider.state.graph_boxes[connection.email_address]
            box.oldest_token = box.seq

    result = sync_now(connection)

    assert result.outcome == "synced" and result.recorded == 0
    connection.refresh_from_db()
    assert connection.last_sync_error.startswith("history expired; mail between ")
    assert connection.last_sync_error.endswith(" was not read")
    receive(fake_provider, connection, sender="carol@customer.example", to=connection.email_address, subject="After")
    assert sync_now(connection).recorded == 1
    assert list(inbound(entity).values_list("subject", flat=True)) == ["After"]
    connection.refresh_from_db()
    assert connection.last_sync_error == "" and connection.last_synced_at is not None


@pytest.mark.parametrize("channel", CHANNELS)
def test_an_expired_access_token_is_refreshed(fake_provider, entity, user, lead, channel):
    connection = connect_mailbox(fake_provider, entity=entity, user=user, channel=channel)
    sync_now(connection)
    receive(fake_provider, connection, sender="carol@customer.example", to=connection.email_address)
    fake_provider.expire_access_tokens()

    assert sync_now(connection).recorded == 1
    assert fake_provider.state.refresh_count == 1
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.ACTIVE


def test_a_refused_refresh_marks_the_connection_expired_and_stops_its_sync(fake_provider, entity, user, lead):
    connection = connect_mailbox(fake_provider, entity=entity, user=user, channel="outlook")
    sync_now(connection)
    fake_provider.expire_access_tokens()
    fake_provider.state.refuse_refresh = True

    assert sync_now(connection).outcome == "expired"
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.EXPIRED
    assert "invalid_grant" in connection.last_sync_error
    assert str(connection.pk) not in connections_due_for_sync()
    assert sync_now(connection).outcome == "skipped"


@pytest.mark.parametrize(
    ("status", "headers", "wait"),
    [(429, {"Retry-After": "600"}, 600), (429, {"Retry-After": "5"}, 120), (500, {}, 120), (503, {}, 120)],
)
def test_rate_limits_and_server_errors_wait_for_the_next_interval(
    fake_provider, entity, user, lead, settings, status, headers, wait
):
    settings.EMAIL_SYNC_INTERVAL_SECONDS = 120
    connection = connect_mailbox(fake_provider, entity=entity, user=user)
    sync_now(connection)
    connection.refresh_from_db()
    cursor = connection.sync_cursor
    receive(fake_provider, connection, sender="carol@customer.example", to=connection.email_address)
    fake_provider.script(
        "gmail_history", status, headers=headers, body={"error": {"code": status, "message": "Slow down"}}
    )

    before = timezone.now()
    assert sync_now(connection).outcome == "retry"
    connection.refresh_from_db()
    assert str(status) in connection.last_sync_error
    assert connection.sync_cursor == cursor and connection.sync_lease_token is None
    assert before + timedelta(seconds=wait - 2) <= connection.next_sync_at <= timezone.now() + timedelta(seconds=wait)
    assert str(connection.pk) not in connections_due_for_sync()

    assert sync_now(connection).recorded == 1  # at the next interval
    connection.refresh_from_db()
    assert connection.last_sync_error == ""


def test_a_failing_message_fetch_keeps_the_page_for_the_next_run(fake_provider, entity, user, lead):
    connection = connect_mailbox(fake_provider, entity=entity, user=user)
    sync_now(connection)
    for n in range(3):
        receive(
            fake_provider,
            connection,
            sender="carol@customer.example",
            to=connection.email_address,
            subject=f"Message {n}",
        )
    fake_provider.script("gmail_get", 500, body={"error": {"code": 500, "message": "Backend Error"}})
    assert sync_now(connection).outcome == "retry"
    assert inbound(entity).count() == 0
    assert sync_now(connection).recorded == 3


def test_sync_is_isolated_between_entities(fake_provider, api, entity, user, other_entity, other_user, lead):
    theirs = factories.make_contact(other_entity, email="carol@customer.example")
    mine = connect_mailbox(fake_provider, entity=entity, user=user)
    other = connect_mailbox(fake_provider, entity=other_entity, user=other_user, address="bob.sales@gmail.example")
    sync_now(mine), sync_now(other)
    receive(
        fake_provider,
        mine,
        sender="carol@customer.example",
        to=mine.email_address,
        message_id="<shared@customer.example>",
    )
    receive(
        fake_provider,
        other,
        sender="carol@customer.example",
        to=other.email_address,
        message_id="<shared@customer.example>",
    )
    assert sync_now(mine).recorded == 1
    assert sync_now(other).recorded == 1  # the same message, once per entity
    assert inbound(entity).get().contact_id == lead.contact_id
    assert inbound(other_entity).get().contact_id == theirs.pk
    assert inbound(other_entity).get().lead_id is None

    # Another entity's connection behaves like a missing one.
    assert api.post(f"/outbound-email-connections/{other.pk}/sync", {}).status_code == 404
    assert api.patch(f"/outbound-email-connections/{other.pk}", {"syncEnabled": False}).status_code == 404


def test_received_html_is_sanitised_to_text_capped_and_attachments_only_named(fake_provider, entity, user, lead):
    connection = connect_mailbox(fake_provider, entity=entity, user=user)
    sync_now(connection)
    html = (
        '<p onclick="steal()">Hi <b>there</b>, see <a href="javascript:alert(1)">this</a>.</p>'
        "<script>alert('x')</script><style>p{}</style>" + "<p>" + "x" * 150_000 + "</p>"
    )
    receive(
        fake_provider,
        connection,
        sender="carol@customer.example",
        to=connection.email_address,
        text=None,
        html=html,
        attachments=("contract.pdf", "photo.png"),
        subject="Line\r\nbreak\x00",
    )
    sync_now(connection)
    activity = inbound(entity).get()
    assert activity.body.startswith("Hi there, see this.")
    for forbidden in ("<", "script", "alert", "onclick", "javascript"):
        assert forbidden not in activity.body
    assert len(activity.body.encode()) <= 100 * 1024
    assert activity.body.endswith("[Attachments, not stored: contract.pdf, photo.png]")
    assert activity.subject == "Line break"


def test_recording_a_page_costs_a_bounded_number_of_queries(fake_provider, entity, user, lead, settings):
    """The queries of a page do not grow with its messages (addresses, answered emails and inserts
    are batched per page)."""
    fake_provider.state.page_size = 50
    connection = connect_mailbox(fake_provider, entity=entity, user=user)
    sync_now(connection)
    sent = _sent_email(lead, connection)
    for n in range(20):
        factories.make_contact(entity, email=f"person{n}@customer.example")

    def run(count: int) -> int:
        for n in range(count):
            receive(
                fake_provider,
                connection,
                sender=f"person{n % 20}@customer.example",
                to=connection.email_address,
                thread_id=sent.provider_thread_id,
                subject=f"Reply {n}",
            )
        receive(fake_provider, connection, sender="stranger@nowhere.example", to=connection.email_address)
        with CaptureQueriesContext(connection_db) as queries:
            result = sync_now(connection)
        assert result.recorded == count
        return len(queries)

    small, large = run(2), run(20)
    print(f"\nqueries per sync run of one page: {small} (2 messages), {large} (20 messages)")
    assert large == small, (small, large)
    assert large <= 20, large
    assert inbound(entity).filter(lead=lead).count() == 22


def test_outlook_html_bodies_and_attachments(fake_provider, entity, user, lead):
    connection = connect_mailbox(fake_provider, entity=entity, user=user, channel="outlook")
    sync_now(connection)
    fake_provider.receive_outlook(
        connection.email_address,
        sender="carol@customer.example",
        to=connection.email_address,
        body='<div>Signed <a href="https://example.com/doc">copy</a><img src=x onerror="boom()"></div>',
        content_type="html",
        attachments=("signed.pdf",),
    )
    sync_now(connection)
    activity = inbound(entity).get()
    assert activity.body == "Signed copy (https://example.com/doc)\n\n[Attachments, not stored: signed.pdf]"


def test_an_unreadable_message_is_skipped_and_the_sync_goes_on(fake_provider, entity, user, lead):
    connection = connect_mailbox(fake_provider, entity=entity, user=user)
    sync_now(connection)
    with fake_provider.lock:  # a resource the parser cannot read
        box = fake_provider.state.gmail_boxes[connection.email_address]
        box.history_id += 1
        box.records.append(
            (box.history_id, {"id": "broken", "threadId": "t", "labelIds": [], "payload": {"parts": "?"}})
        )
    receive(
        fake_provider,
        connection,
        sender="Carol\x00 <carol@customer.example>",
        to=connection.email_address,
        subject="Fine\x00 one",
        cc="bad\x00address@x.example",
    )
    result = sync_now(connection)
    assert result.outcome == "synced" and result.recorded == 1
    assert inbound(entity).get().subject == "Fine one"
