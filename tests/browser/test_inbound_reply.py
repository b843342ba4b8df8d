"""A customer's reply, read from the mailbox by the inbound sync, on the board and the lead page
(Chromium): "replied … ago", and the received message in the timeline, escaped and collapsed."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from crm.email.delivery import email_deliver
from crm.models import Lead
from tests import factories
from tests.browser.conftest import login
from tests.crm.email.conftest import make_email
from tests.crm.email.fake_provider import CLIENTS, FakeProvider
from tests.crm.email.inbound_support import connect_mailbox, sync_now

pytestmark = pytest.mark.browser


@pytest.fixture
def fake(settings):
    server = FakeProvider()
    settings.GOOGLE_OAUTH_CLIENT_ID, settings.GOOGLE_OAUTH_CLIENT_SECRET = CLIENTS["google"]
    settings.GOOGLE_OAUTH_TOKEN_URL = f"{server.base_url}/google/token"
    settings.GMAIL_API_BASE_URL = server.base_url
    yield server
    server.stop()


def test_the_lead_page_shows_the_reply(page: Page, fake, owner, workspace):
    company = factories.make_company(workspace, name="Customer Inc")
    carol = factories.make_contact(workspace, first_name="Carol", email="carol@customer.example", company=company)
    lead = Lead.objects.create(
        entity=workspace,
        title="Customer renewal",
        company=company,
        contact=carol,
        stage=factories.stage(workspace, "new"),
        currency="USD",
        probability_pct=10,
    )
    connection = connect_mailbox(fake, entity=workspace, user=owner)
    sync_now(connection)
    sent = make_email(lead, connection, to_addresses=[carol.email])
    assert email_deliver(email_id=sent.pk).outcome == "sent"
    sent.refresh_from_db()
    body = "Hi! <script>window.hacked = true</script> Monday 10:00 works. " + "Details follow. " * 40
    fake.receive_gmail(
        connection.email_address,
        sender="Carol <carol@customer.example>",
        to=connection.email_address,
        thread_id=sent.provider_thread_id,
        text=body,
    )
    assert sync_now(connection).recorded == 1

    login(page, owner)
    card = page.locator(f'[data-lead-id="{lead.pk}"]')
    expect(card.locator('[data-field="replied"]')).to_have_text("replied just now")

    page.goto(f"/crm/leads/{lead.pk}?entityId={workspace.pk}")
    expect(page.locator('[data-field="replied"]')).to_have_text("replied just now")
    event = page.locator('[data-event-kind="email_received"]')
    expect(event).to_contain_text('Email "Re: Following up" received from Carol')
    received = event.locator("details[data-received-email]")
    expect(received).not_to_have_attribute("open", "")
    expect(received.locator(".email-body")).to_be_hidden()  # long: collapsed
    received.locator("summary").click()
    expect(received.locator(".email-body")).to_be_visible()
    expect(received.locator(".email-body")).to_contain_text("<script>window.hacked = true</script> Monday 10:00 works.")
    assert page.evaluate("window.hacked === undefined")
