"""The sales pages in a real browser: dashboard charts against the API, tasks done in place, the
header search driven by the keyboard, role refusals, and an axe-core accessibility check of
every page. Each test saves screenshots under `test-artifacts/screenshots/` (git-ignored).
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.test import Client
from playwright.sync_api import Page, expect

from axiomatic.models import Membership
from crm.models import Activity
from tests import factories
from tests.browser.conftest import PASSWORD, assert_accessible, login
from tests.helpers import ApiClient

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
UTC = dt.UTC


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def api_for(entity, user) -> ApiClient:
    issued = factories.make_key(entity, user)
    return ApiClient(Client(), secret=issued.secret, entity=entity, user=user)


def seed(entity, owner):
    """A small sales team's week: companies, contacts, leads in several stages, tasks, activities."""
    now = dt.datetime.now(UTC)
    globex = factories.make_company(entity, name="Globex Corporation", domain="globex.example", owner=owner)
    initech = factories.make_company(entity, name="Initech", owner=owner, city="Austin", country="US")
    hank = factories.make_contact(
        entity, first_name="Hank", last_name="Scorpio", email="hank@globex.example", company=globex
    )
    factories.make_contact(entity, first_name="Peter", last_name="Gibbons", company=initech, title="Engineer")
    factories.make_lead(
        entity, "new", title="Globex expansion", value="1200.50", company=globex, contact=hank, owner=owner
    )
    factories.make_lead(entity, "qualified", title="Initech licences", value="800", company=initech, owner=owner)
    factories.make_lead(entity, "proposal", title="Euro deal", value="300", currency="EUR")
    factories.make_lead(entity, "won", title="Signed", value="5000", owner=owner, closed_at=now - dt.timedelta(days=1))
    factories.make_lead(entity, "won", title="Signed earlier", value="700", closed_at=now - dt.timedelta(days=70))
    factories.make_lead(entity, "lost", title="Gone", value="90", closed_at=now - dt.timedelta(days=35))
    factories.make_task(entity, "Call Hank back", due=now - dt.timedelta(days=1), assignee=owner, company=globex)
    today_end = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time.min, tzinfo=UTC)
    factories.make_task(
        entity,
        "Send the Initech quote",
        due=min(now + dt.timedelta(hours=1), today_end - dt.timedelta(minutes=1)),
        assignee=owner,
    )
    factories.make_task(entity, "Prepare the demo", due=now + dt.timedelta(days=3), assignee=owner)
    for days in (0, 2, 9, 20, 40):
        factories.make_activity(
            entity,
            type="call",
            subject=f"Call {days} days ago",
            occurred_at=now - dt.timedelta(days=days),
            company=globex,
        )
    return {"globex": globex, "initech": initech, "hank": hank}


def test_dashboard_charts_show_the_api_figures(page, owner, workspace):
    seed(workspace, owner)
    login(page, owner)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard").click()
    page.wait_for_url("**/crm/dashboard")
    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
    for caption in ("Pipeline by stage", "Won and lost per month", "Activities per week", "Tasks"):
        expect(
            page.locator("figure")
            .filter(has=page.get_by_role("heading", name=caption, exact=True))
            .locator("svg[role=img]")
            .first
        ).to_be_visible()
    expect(page.locator("svg[role=img] rect.series-count")).to_have_count(7)

    body = api_for(workspace, owner).get("/dashboard").json()
    rows = page.locator('[data-chart-table="pipeline"] tbody tr')
    expect(rows).to_have_count(len(body["pipeline"]))
    for stage in body["pipeline"]:
        row = page.locator(f'[data-chart-table="pipeline"] tr[data-stage-id="{stage["stageId"]}"]')
        expect(row.locator("th")).to_have_text(stage["name"])
        expect(row.locator("[data-lead-count]")).to_have_text(str(stage["leadCount"]))
        for money in stage["value"]:
            cell = row.locator(f'[data-currency="{money["currency"]}"]')
            assert cell.get_attribute("data-amount") == money["amount"]
            assert Decimal(cell.inner_text().replace(",", "")) == Decimal(money["amount"])
    tasks = page.locator('[data-chart-table="tasks"]')
    expect(tasks.locator('[data-tasks="open"]')).to_have_text(str(body["tasks"]["open"]))
    expect(tasks.locator('[data-tasks="overdue"]')).to_have_text(str(body["tasks"]["overdue"]))
    expect(tasks.locator('[data-tasks="due_today"]')).to_have_text(str(body["tasks"]["dueToday"]))
    this_month = page.locator('[data-chart-table="won-lost"] tbody tr').last
    expect(this_month.locator("[data-won]")).to_have_text(str(body["leads"]["wonThisMonth"]))
    expect(this_month.locator("[data-lost]")).to_have_text(str(body["leads"]["lostThisMonth"]))
    weeks = page.locator('[data-chart-table="activities"] tbody tr')
    expect(weeks).to_have_count(12)
    counts = [int(text) for text in weeks.locator("td").all_inner_texts()]
    assert sum(counts) == 5 + 3 and counts[-1] >= 1  # the calls and the tasks (also activities)
    screenshot(page, "dashboard")
    assert_accessible(page, "dashboard")

    page.get_by_label("Records of").select_option("me")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**owner=me**")
    mine = api_for(workspace, owner).get("/dashboard", {"ownerUserId": "me"}).json()
    expect(page.locator('[data-kpi="leads-open"]')).to_have_text(str(mine["leads"]["open"]))


def test_marking_a_task_done_moves_it_without_reloading(page, owner, workspace):
    seed(workspace, owner)
    login(page, owner)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Tasks").click()
    page.wait_for_url("**/crm/tasks")
    page.evaluate("window.__sameDocument = true")
    today = page.locator('[data-group="today"]')
    task = today.locator("li.task").filter(has_text="Send the Initech quote")
    expect(task).to_be_visible()
    expect(page.locator('[data-group="overdue"] li.task')).to_have_text(re.compile("Call Hank back"))
    screenshot(page, "tasks")
    assert_accessible(page, "tasks")

    task.get_by_role("button", name="Mark done: Send the Initech quote").click()

    expect(today.locator("li.task")).to_have_count(0)
    completed = page.locator("#completed-tasks li")
    expect(completed).to_have_count(1)
    expect(completed).to_contain_text("Send the Initech quote")
    expect(page.locator("#tasks-status")).to_have_text("Marked “Send the Initech quote” done.")
    assert page.evaluate("window.__sameDocument") is True
    done = Activity.objects.get(subject="Send the Initech quote")
    assert done.status == "completed" and done.completed_at is not None
    screenshot(page, "tasks-after-done")

    completed.get_by_role("button", name=re.compile("Undo")).click()
    expect(completed).to_have_count(0)
    expect(today.locator("li.task").filter(has_text="Send the Initech quote")).to_be_visible()
    assert Activity.objects.get(pk=done.pk).status == "open"


def test_rescheduling_a_task_moves_it_to_its_new_group(page, owner, workspace):
    seed(workspace, owner)
    login(page, owner)
    page.goto("/crm/tasks")
    overdue = page.locator('[data-group="overdue"]')
    task = overdue.locator("li.task").filter(has_text="Call Hank back")
    task.locator("summary").click()
    task.get_by_label("New due date").fill("2099-01-15T10:00")
    task.get_by_role("button", name="Save").click()
    expect(overdue.locator("li.task")).to_have_count(0)
    expect(page.locator('[data-group="later"] li.task').filter(has_text="Call Hank back")).to_contain_text(
        "Thu 15 Jan 2099, 10:00"
    )
    assert Activity.objects.get(subject="Call Hank back").due_at == dt.datetime(2099, 1, 15, 10, tzinfo=UTC)


def test_search_finds_a_company_by_a_middle_substring_and_opens_it(page, owner, workspace):
    records = seed(workspace, owner)
    other = factories.make_entity(name="Elsewhere", owner=factories.make_user())
    factories.make_company(other, name="Globex Elsewhere")
    login(page, owner)
    page.goto("/crm/contacts")
    box = page.get_by_role("combobox", name="Search companies, contacts and leads")
    box.click()
    box.press_sequentially("obex", delay=40)
    listbox = page.get_by_role("listbox", name="Search results")
    expect(listbox).to_be_visible()
    expect(box).to_have_attribute("aria-expanded", "true")
    expect(listbox.get_by_role("group", name="Companies").get_by_role("option")).to_have_text(
        ["Globex Corporation · globex.example"]
    )
    expect(listbox.get_by_role("group", name="Contacts").get_by_role("option")).to_have_count(1)
    expect(listbox.get_by_role("group", name="Leads").get_by_role("option")).to_have_count(1)
    expect(listbox).not_to_contain_text("Elsewhere")
    expect(page.locator("#global-search-status")).to_contain_text("3 results")

    box.press("ArrowDown")
    first = listbox.get_by_role("option").first
    expect(first).to_have_attribute("aria-selected", "true")
    expect(box).to_have_attribute("aria-activedescendant", f"search-option-company-{records['globex'].pk}")
    box.press("ArrowDown")
    box.press("ArrowUp")
    expect(box).to_have_attribute("aria-activedescendant", f"search-option-company-{records['globex'].pk}")
    screenshot(page, "search")
    assert_accessible(page, "search listbox")
    box.press("Enter")

    page.wait_for_url(f"**/crm/companies/{records['globex'].pk}**")
    expect(page.get_by_role("heading", name="Globex Corporation", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="Hank Scorpio")).to_be_visible()
    expect(page.get_by_role("link", name="Globex expansion")).to_be_visible()
    screenshot(page, "company")
    assert_accessible(page, "company")

    box = page.get_by_role("combobox", name="Search companies, contacts and leads")
    box.fill("zzz-nothing")
    expect(page.locator("#global-search-status")).to_have_text("No matches.")
    expect(box).to_have_attribute("aria-expanded", "false")
    box.press("Escape")
    expect(box).to_have_value("")


def test_a_member_cannot_reach_admin_only_controls(page, owner, workspace):
    member = factories.make_member(workspace, name="Mia Member", password=PASSWORD)
    factories.make_task(workspace, "Mia's task", due=dt.datetime.now(UTC), assignee=member)
    factories.make_task(workspace, "Olivia's task", due=dt.datetime.now(UTC), assignee=owner)
    login(page, member)
    page.goto("/crm/tasks")
    expect(page.get_by_role("heading", name="My tasks")).to_be_visible()
    expect(page.get_by_label("Assigned to")).to_have_count(0)
    expect(page.locator("li.task")).to_have_text([re.compile("Mia's task")])
    response = page.goto(f"/crm/tasks?assignee={owner.pk}")
    assert response.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(page.locator("main")).to_contain_text("You need the admin role to see other people's tasks")
    expect(page.locator("main")).not_to_contain_text("Olivia's task")

    # An admin has the control and sees the colleague's tasks with it.
    Membership.objects.filter(user=member, entity=workspace).update(role=Membership.Role.ADMIN)
    page.goto("/crm/tasks")
    page.get_by_label("Assigned to").select_option(str(owner.pk))
    page.get_by_role("button", name="Show").click()
    expect(page.locator("li.task")).to_have_text([re.compile("Olivia's task")])


def test_companies_and_contacts_pages_work_and_are_accessible(page, owner, workspace):
    records = seed(workspace, owner)
    login(page, owner)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Companies").click()
    page.wait_for_url("**/crm/companies")
    expect(page.locator("table.records tbody tr")).to_have_count(2)
    screenshot(page, "companies")
    assert_accessible(page, "companies")

    page.get_by_role("link", name="New company").click()
    page.get_by_label("Name").fill("Umbrella")
    page.get_by_label("Domain").fill("globex.example")
    screenshot(page, "company-form")
    assert_accessible(page, "company form")
    page.get_by_role("button", name="Create company").click()
    expect(page.get_by_role("alert")).to_contain_text("A company with domain globex.example already exists.")
    page.get_by_label("Domain").fill("umbrella.example")
    page.get_by_role("button", name="Create company").click()
    expect(page.get_by_role("heading", name="Umbrella", level=1)).to_be_visible()
    assert_accessible(page, "company form errors")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Contacts").click()
    expect(page.locator("table.records tbody tr")).to_have_count(2)
    screenshot(page, "contacts")
    assert_accessible(page, "contacts")
    page.get_by_role("link", name="Scorpio, Hank").click()
    expect(page.get_by_role("heading", name="Hank Scorpio", level=1)).to_be_visible()
    screenshot(page, "contact")
    assert_accessible(page, "contact")

    page.get_by_role("link", name="Edit contact").click()
    page.get_by_label("Find a company by name").fill("initech")
    select = page.get_by_label("Primary company")
    expect(select.locator("option")).to_have_count(3)
    select.select_option(str(records["initech"].pk))
    screenshot(page, "contact-form")
    assert_accessible(page, "contact form")
    page.get_by_role("button", name="Save contact").click()
    expect(page.locator('[data-field="company"]')).to_have_text("Initech")

    page.goto("/crm/search?q=glob")
    expect(page.get_by_role("heading", name="Companies")).to_be_visible()
    screenshot(page, "search-page")
    assert_accessible(page, "search page")


def test_load_more_companies_keeps_the_keyboard_in_the_list(page, owner, workspace):
    from crm.models import Company

    Company.objects.bulk_create(Company(entity=workspace, name=f"Company {n:03d}") for n in range(55))
    login(page, owner)
    page.goto("/crm/companies")
    rows = page.locator("table.records tbody tr[data-company-id]")
    expect(rows).to_have_count(50)
    page.get_by_role("link", name="Load more companies").focus()
    page.keyboard.press("Enter")
    expect(rows).to_have_count(55)
    expect(page.get_by_role("link", name="Company 050")).to_be_focused()
    expect(page.get_by_role("link", name="Load more companies")).to_have_count(0)
