"""The pipeline board and the lead page in a real browser: columns, drag and drop, "Move to…",
the lost-reason dialog, refusals, the new-lead form, "Load more" and logging an activity.

Moves are checked through the JSON API with a real `ak_` key, not by peeking at the page.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client
from playwright.sync_api import expect

from crm.models import Lead, PipelineStage
from tests import factories
from tests.browser.conftest import assert_accessible, login
from tests.helpers import ApiClient

pytestmark = pytest.mark.browser


def make_lead(entity, stage_key: str = "new", **fields) -> Lead:
    stage = factories.stage(entity, stage_key)
    fields.setdefault("currency", entity.default_currency)
    fields.setdefault("probability_pct", stage.default_probability_pct)
    return Lead.objects.create(entity=entity, stage=stage, **fields)


def api_for(entity, user) -> ApiClient:
    issued = factories.make_key(entity, user)
    return ApiClient(Client(), secret=issued.secret, entity=entity, user=user)


def column(page, entity, stage_key: str):
    return page.locator(f'.board-column[data-stage-id="{factories.stage(entity, stage_key).pk}"]')


def card(page, lead):
    return page.locator(f'.lead-card[data-lead-id="{lead.pk}"]')


def expect_count(page, entity, stage_key: str, count: int) -> None:
    expect(column(page, entity, stage_key).locator(".lead-count")).to_have_attribute("data-lead-count", str(count))


def test_login_shows_the_seven_default_columns_in_order(page, owner, workspace):
    login(page, owner)
    columns = page.locator(".board-column")
    expect(columns).to_have_count(7)
    expect(columns.locator("h2")).to_have_text(
        ["New", "Contacted", "Qualified", "Proposal", "Negotiation", "Won", "Lost"]
    )
    stage_ids = columns.evaluate_all("columns => columns.map(c => c.dataset.stageId)")
    expected = PipelineStage.objects.for_entity(workspace).order_by("sort_order").values_list("id", flat=True)
    assert stage_ids == [str(pk) for pk in expected]
    make_lead(workspace, "new", title="Accessible lead", value=Decimal("10.00"))
    page.reload()
    assert_accessible(page, "board")


def test_dragging_a_card_to_qualified_moves_the_lead_without_reload(page, owner, workspace):
    lead = make_lead(workspace, title="Drag me", value=Decimal("250"))
    make_lead(workspace, "qualified", title="Already qualified", value=Decimal("100"))
    login(page, owner)
    page.evaluate("window.__sameDocument = true")

    card(page, lead).drag_to(column(page, workspace, "qualified"))

    expect_count(page, workspace, "new", 0)
    expect_count(page, workspace, "qualified", 2)
    expect(column(page, workspace, "qualified").locator('[data-currency="USD"]')).to_have_attribute(
        "data-amount", "350.00"
    )
    expect(column(page, workspace, "qualified").locator(f'[data-lead-id="{lead.pk}"]')).to_be_visible()
    assert page.evaluate("window.__sameDocument") is True

    api = api_for(workspace, owner)
    body = api.get(f"/leads/{lead.pk}").json()["lead"]
    assert body["stageId"] == str(factories.stage(workspace, "qualified").pk)
    events = api.get(f"/leads/{lead.pk}/timeline").json()["timeline"]
    assert events[0]["kind"] == "stage_changed"
    assert events[0]["data"]["toStageName"] == "Qualified" and events[0]["data"]["fromStageName"] == "New"


def test_dropping_on_lost_asks_for_a_reason_and_sends_it(page, owner, workspace):
    lead = make_lead(workspace, "proposal", title="Going south", value=Decimal("900"))
    login(page, owner)

    card(page, lead).drag_to(column(page, workspace, "lost"))
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Lost reason").fill("Chose a competitor")
    dialog.get_by_role("button", name="Mark as lost").click()

    expect_count(page, workspace, "lost", 1)
    expect_count(page, workspace, "proposal", 0)
    body = api_for(workspace, owner).get(f"/leads/{lead.pk}").json()["lead"]
    assert body["status"] == "lost"
    assert body["lostReason"] == "Chose a competitor"


def test_cancelling_the_lost_dialog_leaves_the_lead_where_it_was(page, owner, workspace):
    lead = make_lead(workspace, title="Not lost yet")
    login(page, owner)
    card(page, lead).drag_to(column(page, workspace, "lost"))
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("dialog")).to_be_hidden()
    expect(column(page, workspace, "new").locator(f'[data-lead-id="{lead.pk}"]')).to_be_visible()
    assert Lead.objects.get(pk=lead.pk).stage.system_key == "new"


def test_refused_move_snaps_back_with_a_message(page, owner, workspace):
    lead = make_lead(workspace, title="Stays put")
    login(page, owner)
    # The stage disappears after the page was rendered, so the API refuses the move.
    proposal = factories.stage(workspace, "proposal")
    target = page.locator(f'.board-column[data-stage-id="{proposal.pk}"]')
    proposal.delete()

    card(page, lead).drag_to(target)

    alert = page.locator("#board-alert")
    expect(alert).to_be_visible()
    expect(alert).to_have_attribute("role", "alert")
    expect(alert).to_contain_text("Could not move")
    expect(column(page, workspace, "new").locator(f'[data-lead-id="{lead.pk}"]')).to_be_visible()
    expect_count(page, workspace, "new", 1)
    assert Lead.objects.get(pk=lead.pk).stage.system_key == "new"


def test_move_to_works_with_the_keyboard_alone(page, owner, workspace):
    lead = make_lead(workspace, title="Keyboard lead", value=Decimal("75"))
    login(page, owner)

    select = card(page, lead).get_by_label("Move to…")
    select.focus()
    page.keyboard.press("ArrowDown")  # New → Contacted
    page.keyboard.press("Tab")  # → the Move button
    expect(card(page, lead).get_by_role("button", name="Move")).to_be_focused()
    page.keyboard.press("Enter")

    expect_count(page, workspace, "contacted", 1)
    expect_count(page, workspace, "new", 0)
    moved = column(page, workspace, "contacted").locator(f'[data-lead-id="{lead.pk}"]')
    expect(moved.get_by_label("Move to…")).to_be_focused()
    body = api_for(workspace, owner).get(f"/leads/{lead.pk}").json()["lead"]
    assert body["stageId"] == str(factories.stage(workspace, "contacted").pk)


def test_new_lead_form_creates_a_lead_through_the_api(page, owner, workspace):
    login(page, owner)
    form = page.locator("form[data-new-lead-form]")
    form.get_by_label("Title").fill("Fresh lead")
    form.get_by_label("Value").fill("1200.50")
    form.get_by_role("button", name="Create lead").click()

    expect_count(page, workspace, "new", 1)
    expect(column(page, workspace, "new").locator('[data-currency="USD"]')).to_have_attribute("data-amount", "1200.50")
    lead = Lead.objects.get(entity=workspace)
    assert lead.title == "Fresh lead" and lead.owner_id == owner.pk and lead.value == Decimal("1200.50")


def test_load_more_fetches_the_next_page_of_a_column(page, owner, workspace):
    stage = factories.stage(workspace, "new")
    Lead.objects.bulk_create(
        Lead(entity=workspace, stage=stage, title=f"Bulk {n}", currency="USD", probability_pct=10) for n in range(53)
    )
    login(page, owner)
    cards = column(page, workspace, "new").locator(".lead-card")
    expect(cards).to_have_count(50)
    column(page, workspace, "new").get_by_role("button", name="Load more").click()
    expect(cards).to_have_count(53)
    expect(column(page, workspace, "new").get_by_role("button", name="Load more")).to_have_count(0)


def test_lead_page_logs_an_activity_onto_the_timeline(page, owner, workspace):
    lead = make_lead(workspace, title="Detailed lead", value=Decimal("10"))
    login(page, owner)
    card(page, lead).get_by_role("link", name="Detailed lead").click()
    page.wait_for_url(f"**/crm/leads/{lead.pk}**")
    expect(page.get_by_role("heading", name="Detailed lead")).to_be_visible()

    form = page.locator("form[data-activity-form]")
    form.get_by_label("Type").select_option("call")
    form.get_by_label("Subject").fill("Discovery call")
    form.get_by_role("button", name="Log activity").click()

    expect(page.locator("#timeline li").first).to_contain_text("Discovery call")
    activities = api_for(workspace, owner).get("/activities", {"leadId": str(lead.pk)}).json()["activities"]
    assert [a["subject"] for a in activities] == ["Discovery call"]
