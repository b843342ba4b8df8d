"""Custom fields on the sales pages (detail, forms, list filter) and `/settings/custom-fields`."""

from __future__ import annotations

import re
from html import unescape

from axiomatic.models import Membership
from crm.models import Company, Contact, CustomField
from tests import factories

OPTIONS = [{"value": "emea", "label": "EMEA"}, {"value": "apac", "label": "APAC"}]


def define(api, key, kind, object_type="company", **extra):
    response = api.post(
        "/custom-fields", {"objectType": object_type, "key": key, "label": key.title(), "type": kind, **extra}
    )
    assert response.status_code == 201, response.content
    return response.json()["customField"]


def _text(response) -> str:
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode())))


def company_post(**fields) -> dict:
    return {"name": "Acme", "role": "prospect", "status": "active", **fields}


def test_company_form_has_an_input_per_type_and_saves_through_the_service(api, signed_in, entity, user):
    define(api, "tier", "select", options=OPTIONS)
    define(api, "markets", "multiselect", options=OPTIONS)
    define(api, "renewal", "date")
    define(api, "signed_at", "datetime")
    define(api, "vip", "boolean")
    define(api, "seats", "number")
    define(api, "manager", "user")
    define(api, "budget", "currency")
    form = signed_in.get("/crm/companies/new").content.decode()
    assert 'name="cf_tier"' in form and "<select" in form
    assert 'type="checkbox" name="cf_markets"' in form
    assert 'type="date" name="cf_renewal"' in form
    assert 'type="datetime-local" name="cf_signed_at"' in form
    assert 'name="cf_budget_0"' in form and 'name="cf_budget_1"' in form

    response = signed_in.post(
        "/crm/companies/new",
        company_post(
            cf_tier="emea",
            cf_markets=["emea", "apac"],
            cf_renewal="2027-01-31",
            cf_signed_at="2026-03-01T09:30",
            cf_vip="true",
            cf_seats="12.50",
            cf_manager=str(user.pk),
            cf_budget_0="EUR",
            cf_budget_1="99.5",
        ),
    )
    assert response.status_code == 302, _text(response)[:1500]
    company = Company.objects.get(entity=entity, name="Acme")
    values = api.get(f"/companies/{company.pk}").json()["company"]["customFields"]
    assert values == {
        "tier": "emea",
        "markets": ["emea", "apac"],
        "renewal": "2027-01-31",
        "signed_at": "2026-03-01T09:30:00.000000Z",  # the entity's zone is UTC
        "vip": True,
        "seats": "12.5",
        "manager": str(user.pk),
        "budget": {"currency": "EUR", "amount": "99.50"},
    }
    page = signed_in.get(f"/crm/companies/{company.pk}")
    shown = _text(page)
    assert "Tier EMEA" in shown and re.search(r"Markets EMEA ?, APAC", shown) and "Budget EUR 99.50" in shown
    assert "cf.tier=emea" in page.content.decode()

    edit = signed_in.get(f"/crm/companies/{company.pk}/edit").content.decode()
    assert 'value="emea" selected' in edit and 'value="2027-01-31"' in edit
    response = signed_in.post(
        f"/crm/companies/{company.pk}/edit",
        company_post(
            cf_tier="apac",
            cf_markets=["emea", "apac"],
            cf_renewal="2027-01-31",
            cf_signed_at="2026-03-01T09:30",
            cf_vip="",
            cf_seats="12.5",
            cf_manager=str(user.pk),
            cf_budget_0="EUR",
            cf_budget_1="99.50",
        ),
    )
    assert response.status_code == 302, _text(response)[:1500]
    values = api.get(f"/companies/{company.pk}").json()["company"]["customFields"]
    assert values["tier"] == "apac" and values["vip"] is None and values["seats"] == "12.5"


def test_form_refusals_read_as_the_api_says_them_on_the_field(api, signed_in, entity):
    define(api, "seats", "number", required=True)
    page = signed_in.post("/crm/companies/new", company_post(cf_seats="many"))
    assert page.status_code == 400
    api_error = api.post("/companies", {"name": "X", "customFields": {"seats": "many"}}).json()
    message = api_error["details"]["customFields.seats"][0]
    assert message in _text(page)
    assert re.search(r"field-cf_seats.*?errorlist", page.content.decode(), re.S)
    missing = signed_in.post("/crm/companies/new", company_post())
    assert missing.status_code == 400 and "This field is required." in _text(missing)
    assert not Company.objects.filter(entity=entity).exists()


def test_contact_pages_carry_their_fields(api, signed_in, entity):
    define(api, "shoe", "number", object_type="contact")
    response = signed_in.post("/crm/contacts/new", {"first_name": "Ada", "cf_shoe": "38"})
    assert response.status_code == 302, _text(response)[:1500]
    contact = Contact.objects.get(entity=entity)
    assert "Shoe 38" in _text(signed_in.get(f"/crm/contacts/{contact.pk}"))


def test_lead_page_shows_its_fields(api, signed_in):
    define(api, "po", "text", object_type="lead")
    lead = api.post("/leads", {"title": "Deal", "customFields": {"po": "PO-7"}}).json()["lead"]
    assert "Po PO-7" in _text(signed_in.get(f"/crm/leads/{lead['id']}"))


def test_lead_custom_fields_are_edited_on_their_form_through_the_service(api, signed_in, entity):
    define(api, "po", "text", object_type="lead", unique=True)
    define(api, "tier", "select", object_type="lead", options=OPTIONS)
    lead = api.post("/leads", {"title": "Deal", "customFields": {"po": "PO-7"}}).json()["lead"]
    api.post("/leads", {"title": "Other", "customFields": {"po": "PO-8"}}).json()["lead"]
    page = signed_in.get(f"/crm/leads/{lead['id']}").content.decode()
    assert f"/crm/leads/{lead['id']}/custom-fields" in page
    form = signed_in.get(f"/crm/leads/{lead['id']}/custom-fields").content.decode()
    assert 'name="cf_po"' in form and "PO-7" in form
    assert 'name="cf_tier"' in form and "<select" in form

    saved = signed_in.post(f"/crm/leads/{lead['id']}/custom-fields", {"cf_po": "PO-9", "cf_tier": "apac"})
    assert saved.status_code == 302
    assert api.get(f"/leads/{lead['id']}").json()["lead"]["customFields"] == {"po": "PO-9", "tier": "apac"}
    timeline = api.get(f"/leads/{lead['id']}/timeline").json()
    assert any("customFields.po" in str(event) for event in timeline["timeline"])

    refused = signed_in.post(f"/crm/leads/{lead['id']}/custom-fields", {"cf_po": "PO-8", "cf_tier": "apac"})
    assert refused.status_code == 400  # unique in the entity: the database's refusal, shown on the form
    assert api.get(f"/leads/{lead['id']}").json()["lead"]["customFields"]["po"] == "PO-9"


def test_another_entitys_lead_has_no_custom_field_form(signed_in):
    foreign = factories.make_lead(factories.make_entity(name="Elsewhere"), title="Theirs")
    assert signed_in.get(f"/crm/leads/{foreign.pk}/custom-fields").status_code == 404


def test_company_list_filters_by_a_custom_field(api, signed_in):
    define(api, "tier", "select", options=OPTIONS)
    api.post("/companies", {"name": "Euro One", "customFields": {"tier": "emea"}})
    api.post("/companies", {"name": "Asia One", "customFields": {"tier": "apac"}})
    page = _text(signed_in.get("/crm/companies", {"cf.tier": "emea"}))
    assert "Euro One" in page and "Asia One" not in page
    refused = signed_in.get("/crm/companies", {"cf.tier": "mars"})
    assert refused.status_code == 400 and "cf.tier" in _text(refused)


def test_settings_page_defines_edits_reorders_and_deletes_with_the_count(api, signed_in, entity):
    page = signed_in.get("/settings/custom-fields")
    assert page.status_code == 200 and "Add a field" in _text(page)
    response = signed_in.post(
        "/settings/custom-fields",
        {"object_type": "company", "key": "tier", "label": "Tier", "type": "select", "options": "emea|EMEA\napac"},
    )
    assert response.status_code == 302, _text(response)[:1500]
    field = CustomField.objects.get(entity=entity, key="tier")
    assert field.options == [{"value": "emea", "label": "EMEA"}, {"value": "apac", "label": "apac"}]
    refused = signed_in.post(
        "/settings/custom-fields", {"object_type": "company", "key": "name", "label": "N", "type": "text"}
    )
    assert refused.status_code == 400 and "built-in" in _text(refused)
    signed_in.post(
        "/settings/custom-fields", {"object_type": "company", "key": "code", "label": "Code", "type": "text"}
    )

    signed_in.post(f"/settings/custom-fields/{field.pk}/move", {"direction": "down"})
    assert [f["key"] for f in api.get("/custom-fields").json()["customFields"]] == ["code", "tier"]

    api.post("/companies", {"name": "A", "customFields": {"tier": "emea"}})
    api.post("/companies", {"name": "B", "customFields": {"tier": "emea"}})
    held = signed_in.post(f"/settings/custom-fields/{field.pk}/edit", {"label": "Region", "options": "apac|APAC"})
    assert held.status_code == 400 and "held by 2 records" in _text(held)
    renamed = signed_in.post(
        f"/settings/custom-fields/{field.pk}/edit", {"label": "Region", "options": "emea|Europe\napac|APAC"}
    )
    assert renamed.status_code == 302
    assert CustomField.objects.get(pk=field.pk).label == "Region"

    confirm = signed_in.get(f"/settings/custom-fields/{field.pk}/delete")
    assert "2 records (company) hold a value" in _text(confirm)
    assert 'data-holders="2"' in confirm.content.decode()
    assert signed_in.post(f"/settings/custom-fields/{field.pk}/delete").status_code == 302
    assert not CustomField.objects.filter(pk=field.pk).exists()


def test_members_see_the_fields_but_cannot_change_them(api, client, entity):
    field = define(api, "tier", "select", options=OPTIONS)
    member = factories.make_member(entity, role=Membership.Role.MEMBER)
    client.force_login(member)
    page = client.get("/settings/custom-fields", {"entityId": str(entity.pk)})
    assert page.status_code == 200 and "Only admins and owners" in _text(page)
    refused = client.post(
        f"/settings/custom-fields?entityId={entity.pk}",
        {"object_type": "company", "key": "x", "label": "X", "type": "text"},
    )
    assert refused.status_code == 403
    assert client.post(f"/settings/custom-fields/{field['id']}/delete?entityId={entity.pk}").status_code == 403
