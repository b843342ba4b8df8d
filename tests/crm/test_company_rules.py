"""One home for the company rules: the API, the sales pages and the admin refuse the same bad
company with the service's sentence and store the same normalised domain and country; the admin
saves companies and marketing lists through their services (archivedAt, the change feed, 409s)."""

from __future__ import annotations

import re
from html import unescape

from axiomatic.models import Change
from crm.models import Company
from marketing.models import MarketingList
from tests import factories

NO_MEMBERS = {"members-TOTAL_FORMS": "0", "members-INITIAL_FORMS": "0"}


def _text(response) -> str:
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode())))


def _admin_post(staff_client, entity, path="/admin/crm/company/add/", **fields):
    return staff_client.post(path, {"entity": entity.pk, "name": "X", "role": "prospect", "status": "active", **fields})


def test_api_page_and_admin_refuse_and_normalise_a_company_alike(api, signed_in, staff_client, entity):
    factories.make_company(entity, name="Taken", domain="taken.example")
    for field, value in (("domain", "not a domain"), ("country", "Germany"), ("domain", "https://Taken.example/x")):
        api_body = api.post("/companies", {"name": "X", field: value}).json()
        messages = api_body.get("details", {}).get(field) or [api_body["error"]]
        page = signed_in.post("/crm/companies/new", {"name": "X", "role": "prospect", "status": "active", field: value})
        admin = _admin_post(staff_client, entity, **{field: value})
        assert (page.status_code, admin.status_code) == (400, 200), field
        for message in messages:
            assert message in _text(page) and message in _text(admin), (field, message)
    assert Company.objects.for_entity(entity).count() == 1

    api.post("/companies", {"name": "Api", "domain": "https://WWW.Api.example/a", "country": "de"})
    signed_in.post(
        "/crm/companies/new",
        {
            "name": "Page",
            "role": "prospect",
            "status": "active",
            "domain": "https://WWW.Page.example/a",
            "country": "de",
        },
    )
    assert (
        _admin_post(staff_client, entity, name="Admin", domain="https://WWW.Admin.example/a", country="de").status_code
        == 302
    )
    stored = {c.name: (c.domain, c.country) for c in Company.objects.for_entity(entity).exclude(name="Taken")}
    assert stored == {name: (f"www.{name.lower()}.example", "DE") for name in ("Api", "Page", "Admin")}

    # Made inactive in the admin: archivedAt as through the API, the domain normalised, the change recorded.
    company = Company.objects.get(name="Admin")
    changed = _admin_post(
        staff_client, entity, path=f"/admin/crm/company/{company.pk}/change/", name="Admin", status="inactive",
        domain="HTTP://Admin.Example./", country="fr",
    )  # fmt: skip
    assert changed.status_code == 302
    body = api.get(f"/companies/{company.pk}").json()["company"]
    assert body["archivedAt"] is not None and (body["domain"], body["country"]) == ("admin.example", "FR")
    assert Change.objects.filter(object_id=str(company.pk), type="company.updated").exists()


def test_the_admin_saves_marketing_lists_through_the_service(staff_client, entity, make_api):
    api = make_api(prefix="/api/marketing")
    taken = api.post("/lists", {"name": "Newsletter"})
    response = staff_client.post(
        "/admin/marketing/marketinglist/add/", {"entity": entity.pk, "name": "NEWSLETTER", **NO_MEMBERS}
    )
    assert response.status_code == 200 and taken.status_code == 201
    assert api.post("/lists", {"name": "NEWSLETTER"}).json()["error"] in _text(response)
    assert staff_client.post(
        "/admin/marketing/marketinglist/add/", {"entity": entity.pk, "name": "Customers", **NO_MEMBERS}
    ).status_code == 302  # fmt: skip
    created = MarketingList.objects.get(name="Customers")
    assert Change.objects.filter(object_id=str(created.pk), type="marketing_list.created").exists()
