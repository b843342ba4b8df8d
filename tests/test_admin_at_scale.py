"""The staff admin at a million rows: bounded queries per change list, affordable counts, batched actions."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from axiomatic.admin import ADMIN_COUNT_CAP
from axiomatic.models import EntityCounter
from axiomatic.models_changes import Change
from crm.models import Activity, Company, Contact, Lead, LeadEvent, PipelineFigure
from marketing.models import MarketingListMember
from tests import factories

CHANGE_LISTS = [
    "/admin/crm/company/",
    "/admin/crm/contact/",
    "/admin/crm/lead/",
    "/admin/crm/activity/",
    "/admin/crm/companymembership/",
    "/admin/crm/leadevent/",
    "/admin/crm/pipelinestage/",
    "/admin/crm/outboundemail/",
    "/admin/marketing/marketinglist/",
    "/admin/marketing/marketinglistmember/",
]


def _seed(entity, size: int, *, start: int = 0) -> None:
    for index in range(start, start + size):
        company = factories.make_company(entity, name=f"Firm {index}")
        contact = factories.make_contact(entity, first_name=f"P{index}", company=company, email=f"p{index}@ex.com")
        lead = factories.make_lead(entity, title=f"Deal {index}", company=company, contact=contact)
        factories.make_activity(entity, subject=f"Call {index}", lead=lead)


def _statements(queries) -> int:
    return len([q for q in queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))])


@pytest.mark.parametrize("path", CHANGE_LISTS)
def test_change_list_queries_do_not_grow_with_rows(admin_client, entity, path):
    _seed(entity, 3)
    with CaptureQueriesContext(connection) as small:
        assert admin_client.get(path).status_code == 200
    _seed(entity, 12, start=100)
    with CaptureQueriesContext(connection) as large:
        assert admin_client.get(path).status_code == 200
    assert _statements(large.captured_queries) == _statements(small.captured_queries)
    assert _statements(large.captured_queries) <= 14


def test_unfiltered_lists_count_nothing_and_filtered_ones_stop_at_ten_thousand(admin_client, entity):
    Company.objects.bulk_create(
        [Company(entity=entity, name=f"C{i:05}", role="customer") for i in range(ADMIN_COUNT_CAP + 2)]
    )
    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get("/admin/crm/company/").content.decode()
    assert f"{ADMIN_COUNT_CAP + 2} companies" in page
    assert not [q for q in queries.captured_queries if "COUNT(*)" in q["sql"] and "crm_company" in q["sql"]]
    filtered = admin_client.get("/admin/crm/company/?role__exact=customer").content.decode()
    assert "10,000+ companies" in filtered


def test_deep_pages_read_the_right_rows(admin_client, entity):
    for index in range(250):
        factories.make_company(entity, name=f"Firm {index:03}")
    page = admin_client.get("/admin/crm/company/?p=3").content.decode()  # 100 a page
    assert "Firm 200" in page and "Firm 249" in page and "Firm 199" not in page


def test_search_matches_emails_exactly_and_names_by_substring(admin_client, entity):
    factories.make_contact(entity, first_name="Grace", last_name="Hopper", email="grace@navy.example")
    factories.make_contact(entity, first_name="Ada", last_name="Lovelace", email="ada@engine.example")
    by_email = admin_client.get("/admin/crm/contact/?q=GRACE@navy.example").content.decode()
    assert "Hopper" in by_email and "Lovelace" not in by_email
    by_name = admin_client.get("/admin/crm/contact/?q=velac").content.decode()
    assert "Lovelace" in by_name and "Hopper" not in by_name
    company = factories.make_company(entity, name="Acme Corp", domain="acme.example")
    assert "Acme Corp" in admin_client.get("/admin/crm/company/?q=acme.example").content.decode()
    assert str(company.pk) in admin_client.get(f"/admin/crm/company/?q={company.pk}").content.decode()


def test_move_selected_leads_runs_the_stage_service_and_reports(admin_client, entity, other_entity):
    leads = [factories.make_lead(entity, title=f"Deal {i}") for i in range(3)]
    foreign = factories.make_lead(other_entity, title="Theirs")
    response = admin_client.post(
        "/admin/crm/lead/",
        {"action": "move_to_stage", "stage": "won", "_selected_action": [str(lead.pk) for lead in [*leads, foreign]]},
        follow=True,
    )
    assert "Moved 4 lead(s)." in response.content.decode()
    for lead in [*leads, foreign]:
        lead.refresh_from_db()
        assert lead.stage.system_key == "won" and lead.closed_at is not None
        assert lead.events.filter(kind="stage_changed").exists()  # the service's timeline event


def test_move_reports_refusals_without_stopping(admin_client, entity):
    lead = factories.make_lead(entity)
    response = admin_client.post(
        "/admin/crm/lead/",
        {"action": "move_to_stage", "stage": "Nowhere", "_selected_action": [str(lead.pk)]},
        follow=True,
    )
    body = response.content.decode()
    assert "Moved 0 lead(s)." in body and "no stage" in body
    lead.refresh_from_db()
    assert lead.stage.system_key == "new"


def test_add_selected_contacts_to_a_marketing_list(admin_client, entity):
    marketing_list = factories.make_list(entity, name="Newsletter")
    reachable = factories.make_contact(entity, email="a@ex.com")
    no_email = factories.make_contact(entity, first_name="Mute", email=None)
    response = admin_client.post(
        "/admin/crm/contact/",
        {
            "action": "add_contacts_to_marketing_list",
            "marketing_list": "newsletter",
            "_selected_action": [str(reachable.pk), str(no_email.pk)],
        },
        follow=True,
    )
    assert "Added 1 contact(s) to &#x27;newsletter&#x27;; 0 already on it; 1 skipped" in response.content.decode()
    assert list(
        MarketingListMember.objects.filter(marketing_list=marketing_list).values_list("contact", flat=True)
    ) == [reachable.pk]


def test_no_change_list_scans_by_date(admin_client):
    from django.contrib import admin

    for model in (Activity, Lead, Contact, Company):
        assert admin.site._registry[model].date_hierarchy is None


@pytest.mark.parametrize(
    "model_path,row",
    [
        ("axiomatic/entitycounter", lambda e: EntityCounter.objects.filter(entity=e).first()),
        ("crm/pipelinefigure", lambda e: PipelineFigure.objects.filter(entity=e).first()),
        ("crm/leadevent", lambda e: LeadEvent.objects.filter(entity=e).first()),
        ("axiomatic/change", lambda e: Change.objects.filter(entity=e).first()),
    ],
)
def test_rows_the_system_keeps_are_read_only_in_the_admin(admin_client, api, entity, model_path, row):
    """Maintained figures, timelines and the change feed: listed and shown, never added, edited or deleted."""
    lead = api.post("/leads", {"title": "Kept by the system", "value": "10"}).json()["lead"]
    api.patch(f"/leads/{lead['id']}", {"title": "Renamed"})
    kept = row(entity)
    assert kept is not None
    assert admin_client.get(f"/admin/{model_path}/").status_code == 200
    assert admin_client.get(f"/admin/{model_path}/{kept.pk}/change/").status_code == 200  # shown read-only
    assert admin_client.get(f"/admin/{model_path}/add/").status_code == 403
    assert admin_client.post(f"/admin/{model_path}/{kept.pk}/delete/", {"post": "yes"}).status_code == 403
    assert type(kept).objects.filter(pk=kept.pk).exists()
