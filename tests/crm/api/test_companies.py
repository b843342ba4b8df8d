"""`/api/crm/companies` plus the list and pagination rules of §1."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from crm.models import Company
from tests import factories
from tests.helpers import assert_error


def create(api, **body):
    response = api.post("/companies", body)
    assert response.status_code == 201, response.content
    return response.json()["company"]


def names(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [company["name"] for company in response.json()["companies"]]


# --- Create -----------------------------------------------------------------------------------


def test_create_answers_201_with_the_wrapped_company_and_defaults(api, entity):
    response = api.post("/companies", {"name": "Acme"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"company"}
    company = body["company"]
    assert company["name"] == "Acme"
    assert company["role"] == "prospect"
    assert company["status"] == "active"
    assert company["ownerUserId"] is None
    assert company["domain"] is None
    assert company["archivedAt"] is None
    for field in ("website", "phone", "email", "industry", "addressLine1", "addressLine2", "city", "region"):
        assert company[field] == ""
    assert company["postalCode"] == "" and company["country"] == "" and company["notes"] == ""
    uuid.UUID(company["id"])
    assert company["createdAt"].endswith("Z") and company["updatedAt"].endswith("Z")
    datetime.fromisoformat(company["createdAt"].replace("Z", "+00:00"))
    assert Company.objects.for_entity(entity).filter(pk=company["id"], name="Acme").exists()


def test_create_exposes_every_contract_field_in_camel_case(api):
    company = create(api, name="Shape")
    assert set(company) == {
        "id",
        "name",
        "role",
        "status",
        "ownerUserId",
        "domain",
        "website",
        "phone",
        "email",
        "industry",
        "addressLine1",
        "addressLine2",
        "city",
        "region",
        "postalCode",
        "country",
        "notes",
        "customFields",
        "archivedAt",
        "createdAt",
        "updatedAt",
    }


def test_create_stores_every_writable_field(api, entity, user):
    body = {
        "name": "Full Co",
        "role": "customer",
        "ownerUserId": str(user.pk),
        "domain": "full.example.com",
        "website": "https://full.example.com",
        "phone": "+49 30 1234",
        "email": "hello@full.example.com",
        "industry": "Software",
        "addressLine1": "Main St 1",
        "addressLine2": "Floor 2",
        "city": "Berlin",
        "region": "BE",
        "postalCode": "10115",
        "country": "DE",
        "notes": "Important",
    }
    company = create(api, **body)
    for key, value in body.items():
        assert company[key] == value, key
    assert api.get(f"/companies/{company['id']}").json()["company"] == company


def test_create_trims_the_name(api):
    assert create(api, name="  Acme Corp \t")["name"] == "Acme Corp"


@pytest.mark.parametrize("name", ["", "   ", "\t\n"])
def test_create_with_blank_name_is_400(api, name):
    body = assert_error(api.post("/companies", {"name": name}), 400)
    assert "name" in body["details"]
    assert not Company.objects.exists()


def test_create_without_name_is_400(api):
    body = assert_error(api.post("/companies", {"role": "customer"}), 400)
    assert "name" in body["details"]


def test_create_with_null_name_is_400(api):
    assert_error(api.post("/companies", {"name": None}), 400)


def test_create_with_201_character_name_is_400(api):
    body = assert_error(api.post("/companies", {"name": "x" * 201}), 400)
    assert "name" in body["details"]


def test_create_with_200_character_name_is_accepted(api):
    assert create(api, name="x" * 200)["name"] == "x" * 200


def test_create_name_is_trimmed_and_its_length_counts_as_sent(api):
    # The schema's maxLength is the rule: 200 characters as sent, surrounding spaces included.
    assert create(api, name="  " + "y" * 196 + "  ")["name"] == "y" * 196
    body = assert_error(api.post("/companies", {"name": "  " + "y" * 200 + "  "}), 400)
    assert "name" in body["details"]


@pytest.mark.parametrize("field", ["role", "status"])
def test_create_with_invalid_enum_is_400(api, field):
    body = assert_error(api.post("/companies", {"name": "Acme", field: "bogus"}), 400)
    assert field in body["details"]


def test_create_with_wrong_type_for_name_is_400(api):
    assert_error(api.post("/companies", {"name": ["Acme"]}), 400)


def test_create_with_invalid_email_is_400(api):
    body = assert_error(api.post("/companies", {"name": "Acme", "email": "not-an-email"}), 400)
    assert "email" in body["details"]


def test_create_inactive_company_sets_archived_at(api):
    company = create(api, name="Old Co", status="inactive")
    assert company["status"] == "inactive"
    assert company["archivedAt"] is not None


# --- Domain -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("example.com", "example.com"),
        ("EXAMPLE.COM", "example.com"),
        ("https://Example.com", "example.com"),
        ("http://www.Example.com/about/team?x=1#top", "www.example.com"),
        ("  sub.example.co.uk/  ", "sub.example.co.uk"),
        ("example.com.", "example.com"),
        ("https://user@example.com:8443/path", "example.com"),
    ],
)
def test_domain_is_normalised_to_a_lower_case_host(api, given, stored):
    assert create(api, name="Domain Co", domain=given)["domain"] == stored


@pytest.mark.parametrize("blank", ["", None])
def test_blank_domain_is_stored_as_null(api, blank):
    assert create(api, name="No Domain", domain=blank)["domain"] is None


@pytest.mark.parametrize(
    "domain", ["not a domain", "http://", "localhost", "-bad.example.com", "exa mple.com", "example", "a..b.com"]
)
def test_invalid_domain_is_400(api, domain):
    body = assert_error(api.post("/companies", {"name": "Bad", "domain": domain}), 400)
    assert "domain" in body["details"]


@pytest.mark.parametrize("field", ["ownerUserId"])
def test_an_empty_string_is_no_id_and_not_null_either(api, field):
    body = assert_error(api.post("/companies", {"name": "Owned", field: ""}), 400)
    assert field in body["details"]
    assert create(api, name="Unowned", **{field: None})[field] is None


def test_duplicate_domain_in_same_entity_is_409_with_existing_id(api):
    first = create(api, name="First", domain="acme.com")
    response = api.post("/companies", {"name": "Second", "domain": "https://ACME.com/contact"})
    body = assert_error(response, 409)
    assert body["existingId"] == first["id"]
    assert Company.objects.filter(name="Second").count() == 0


def test_several_companies_without_domain_are_fine(api):
    create(api, name="One")
    create(api, name="Two", domain="")
    create(api, name="Three", domain=None)
    assert Company.objects.filter(domain__isnull=True).count() == 3


def test_same_domain_in_another_entity_is_fine(api, other_api):
    create(other_api, name="Theirs", domain="shared.com")
    assert create(api, name="Ours", domain="shared.com")["domain"] == "shared.com"


def test_patch_to_a_domain_taken_in_the_entity_is_409(api):
    first = create(api, name="First", domain="taken.com")
    second = create(api, name="Second", domain="free.com")
    body = assert_error(api.patch(f"/companies/{second['id']}", {"domain": "TAKEN.com"}), 409)
    assert body["existingId"] == first["id"]
    assert Company.objects.get(pk=second["id"]).domain == "free.com"


def test_patch_keeping_its_own_domain_is_fine(api):
    company = create(api, name="Mine", domain="mine.com")
    response = api.patch(f"/companies/{company['id']}", {"domain": "https://mine.com", "name": "Mine 2"})
    assert response.status_code == 200, response.content
    assert response.json()["company"]["domain"] == "mine.com"


def test_patch_can_clear_the_domain(api):
    company = create(api, name="Clear", domain="clear.com")
    assert api.patch(f"/companies/{company['id']}", {"domain": None}).json()["company"]["domain"] is None
    assert create(api, name="Reuse", domain="clear.com")["domain"] == "clear.com"


# --- Country ----------------------------------------------------------------------------------


def test_country_is_upper_cased(api):
    assert create(api, name="Country Co", country="de")["country"] == "DE"


@pytest.mark.parametrize("country", ["DEU", "D", "1A", "d-", "Ö1"])
def test_invalid_country_is_400(api, country):
    body = assert_error(api.post("/companies", {"name": "Country Co", "country": country}), 400)
    assert "country" in body["details"]


# --- Owner ------------------------------------------------------------------------------------


def test_owner_may_be_an_entity_member(api, entity):
    member = factories.make_member(entity)
    assert create(api, name="Owned", ownerUserId=str(member.pk))["ownerUserId"] == str(member.pk)


def test_owner_who_is_not_a_member_is_400(api):
    stranger = factories.make_user()
    body = assert_error(api.post("/companies", {"name": "Owned", "ownerUserId": str(stranger.pk)}), 400)
    assert "ownerUserId" in body["details"]


def test_owner_from_another_entity_is_400(api, other_user):
    body = assert_error(api.post("/companies", {"name": "Owned", "ownerUserId": str(other_user.pk)}), 400)
    assert "ownerUserId" in body["details"]


@pytest.mark.parametrize("value", ["not-a-uuid", 42, "6f1c2a4e-8b7d-4e0f-9a3b-2c5d7e9f1a0b", ["x"]])
def test_owner_that_is_malformed_or_unknown_is_400(api, value):
    body = assert_error(api.post("/companies", {"name": "Owned", "ownerUserId": value}), 400)
    assert "ownerUserId" in body["details"]


def test_owner_can_be_cleared_with_null(api, user):
    company = create(api, name="Owned", ownerUserId=str(user.pk))
    response = api.patch(f"/companies/{company['id']}", {"ownerUserId": None})
    assert response.json()["company"]["ownerUserId"] is None


# --- Get --------------------------------------------------------------------------------------


def test_get_returns_the_wrapped_company(api, entity):
    company = factories.make_company(entity, name="Lookup", role="vendor")
    response = api.get(f"/companies/{company.pk}")
    assert response.status_code == 200
    assert response.json()["company"]["id"] == str(company.pk)
    assert response.json()["company"]["role"] == "vendor"


# --- Patch ------------------------------------------------------------------------------------


def test_patch_changes_only_the_fields_sent(api, user):
    company = create(api, name="Patch Me", role="customer", city="Oslo", ownerUserId=str(user.pk), domain="p.com")
    response = api.patch(f"/companies/{company['id']}", {"city": "Bergen"})
    assert response.status_code == 200, response.content
    patched = response.json()["company"]
    assert patched["city"] == "Bergen"
    unchanged = {k: v for k, v in company.items() if k not in ("city", "updatedAt")}
    assert {k: v for k, v in patched.items() if k not in ("city", "updatedAt")} == unchanged
    assert patched["updatedAt"] >= company["updatedAt"]


def test_patch_with_empty_body_changes_nothing(api):
    company = create(api, name="Same")
    response = api.patch(f"/companies/{company['id']}", {})
    assert response.status_code == 200
    assert response.json()["company"]["name"] == "Same"


def test_patch_validates_like_create(api):
    company = create(api, name="Valid")
    assert_error(api.patch(f"/companies/{company['id']}", {"name": "  "}), 400)
    assert_error(api.patch(f"/companies/{company['id']}", {"country": "XYZ"}), 400)
    assert_error(api.patch(f"/companies/{company['id']}", {"role": "partner"}), 400)
    assert Company.objects.get(pk=company["id"]).name == "Valid"


def test_patch_status_inactive_sets_archived_at_and_active_clears_it(api):
    company = create(api, name="Lifecycle")
    archived = api.patch(f"/companies/{company['id']}", {"status": "inactive"}).json()["company"]
    assert archived["status"] == "inactive"
    assert archived["archivedAt"] is not None
    archived_at = datetime.fromisoformat(archived["archivedAt"].replace("Z", "+00:00"))
    assert abs(timezone.now() - archived_at) < timedelta(minutes=1)

    again = api.patch(f"/companies/{company['id']}", {"name": "Lifecycle 2"}).json()["company"]
    assert again["archivedAt"] == archived["archivedAt"]
    still = api.patch(f"/companies/{company['id']}", {"status": "inactive"}).json()["company"]
    assert still["archivedAt"] == archived["archivedAt"], "re-archiving keeps the first archive time"

    restored = api.patch(f"/companies/{company['id']}", {"status": "active"}).json()["company"]
    assert restored["status"] == "active"
    assert restored["archivedAt"] is None
    assert Company.objects.get(pk=company["id"]).archived_at is None


# --- List: filters ----------------------------------------------------------------------------


def test_list_filters_by_role(api, entity):
    factories.make_company(entity, name="P", role="prospect")
    factories.make_company(entity, name="C", role="customer")
    factories.make_company(entity, name="B", role="both")
    assert names(api.get("/companies", {"role": "customer"})) == ["C"]
    assert names(api.get("/companies", {"role": "both"})) == ["B"]
    assert names(api.get("/companies", {"role": "vendor"})) == []


def test_list_filters_by_status_and_includes_archived_without_it(api, entity):
    factories.make_company(entity, name="Active")
    factories.make_company(entity, name="Archived", status="inactive", archived_at=timezone.now())
    assert names(api.get("/companies")) == ["Active", "Archived"]
    assert names(api.get("/companies", {"status": "active"})) == ["Active"]
    assert names(api.get("/companies", {"status": "inactive"})) == ["Archived"]


@pytest.mark.parametrize(
    "params",
    [{"role": "partner"}, {"status": "archived"}, {"role": "Customer"}, {"role": "prospect,customer"}],
)
def test_list_with_invalid_enum_is_400(api, params):
    body = assert_error(api.get("/companies", params), 400)
    assert set(body["details"]) == set(params)


def test_list_with_empty_filter_values_applies_no_filter(api, entity):
    factories.make_company(entity, name="Any", role="vendor", status="inactive")
    assert names(api.get("/companies", {"role": "", "status": "", "ownerUserId": "", "q": ""})) == ["Any"]


def test_list_filters_by_owner_uuid_me_and_unassigned(api, entity, user):
    colleague = factories.make_member(entity)
    factories.make_company(entity, name="Mine", owner=user)
    factories.make_company(entity, name="Colleague", owner=colleague)
    factories.make_company(entity, name="Nobody")
    assert names(api.get("/companies", {"ownerUserId": str(colleague.pk)})) == ["Colleague"]
    assert names(api.get("/companies", {"ownerUserId": "me"})) == ["Mine"]
    assert names(api.get("/companies", {"ownerUserId": "unassigned"})) == ["Nobody"]


def test_owner_filter_me_means_the_key_owner(make_api, entity):
    colleague = factories.make_member(entity)
    factories.make_company(entity, name="Colleague's", owner=colleague)
    colleague_api = make_api(user=colleague)
    assert names(colleague_api.get("/companies", {"ownerUserId": "me"})) == ["Colleague's"]


def test_owner_filter_me_means_the_session_user(client, user, entity):
    factories.make_company(entity, name="Session Mine", owner=user)
    factories.make_company(entity, name="Other")
    client.force_login(user)
    response = client.get("/api/crm/companies", {"ownerUserId": "me"}, headers={"x-entity-id": str(entity.pk)})
    assert names(response) == ["Session Mine"]


def test_owner_filter_with_unknown_or_foreign_user_matches_nothing(api, entity, other_user):
    factories.make_company(entity, name="Someone's", owner=factories.make_member(entity))
    assert names(api.get("/companies", {"ownerUserId": str(uuid.uuid4())})) == []
    assert names(api.get("/companies", {"ownerUserId": str(other_user.pk)})) == []


@pytest.mark.parametrize("value", ["nobody", "123", "ME", "00000000-0000-0000-0000"])
def test_owner_filter_malformed_is_400(api, value):
    body = assert_error(api.get("/companies", {"ownerUserId": value}), 400)
    assert "ownerUserId" in body["details"]


def test_q_is_a_case_insensitive_substring_of_the_name(api, entity):
    for name in ("Acme Corp", "ACME Labs", "Bcme Tools", "Other"):
        factories.make_company(entity, name=name)
    assert set(names(api.get("/companies", {"q": "acme"}))) == {"Acme Corp", "ACME Labs"}
    assert set(names(api.get("/companies", {"q": "CME"}))) == {"Acme Corp", "ACME Labs", "Bcme Tools"}
    assert names(api.get("/companies", {"q": "zzz"})) == []


def test_q_treats_percent_and_underscore_literally(api, entity):
    for name in ("100% Cotton", "1000 Widgets", "a_b Ltd", "axb Ltd", "Back\\slash"):
        factories.make_company(entity, name=name)
    assert names(api.get("/companies", {"q": "100%"})) == ["100% Cotton"]
    assert names(api.get("/companies", {"q": "%"})) == ["100% Cotton"]
    assert names(api.get("/companies", {"q": "a_b"})) == ["a_b Ltd"]
    assert names(api.get("/companies", {"q": "_"})) == ["a_b Ltd"]
    assert names(api.get("/companies", {"q": "k\\s"})) == ["Back\\slash"]


def test_q_does_not_search_other_entities(api, other_entity):
    factories.make_company(other_entity, name="Acme Elsewhere")
    assert names(api.get("/companies", {"q": "acme"})) == []


def test_filters_combine(api, entity, user):
    factories.make_company(entity, name="Acme One", role="customer", owner=user)
    factories.make_company(entity, name="Acme Two", role="customer")
    factories.make_company(entity, name="Acme Three", role="vendor", owner=user)
    params = {"q": "acme", "role": "customer", "ownerUserId": "me", "status": "active"}
    assert names(api.get("/companies", params)) == ["Acme One"]


# --- List: order and pagination ---------------------------------------------------------------


def test_default_order_is_name_then_id(api, entity):
    for name in ("Delta", "Alpha", "Charlie", "Bravo"):
        factories.make_company(entity, name=name)
    same = [factories.make_company(entity, name="Echo") for _ in range(4)]
    response = api.get("/companies")
    assert names(response)[:4] == ["Alpha", "Bravo", "Charlie", "Delta"]
    echo_ids = [c["id"] for c in response.json()["companies"][4:]]
    assert echo_ids == [str(pk) for pk in sorted(c.pk for c in same)]


def test_pages_with_ties_are_stable_and_complete(api, entity):
    created = {str(factories.make_company(entity, name="Tie").pk) for _ in range(7)}
    seen = []
    for page in range(1, 5):
        seen += [c["id"] for c in api.get("/companies", {"page": page, "pageSize": 2}).json()["companies"]]
    assert len(seen) == 7
    assert set(seen) == created


def test_page_past_the_end_is_an_empty_list(api, entity):
    factories.make_company(entity, name="Only")
    body = api.get("/companies", {"page": 9, "pageSize": 10}).json()
    assert body["companies"] == []
    assert (body["page"], body["total"], body["hasMore"]) == (9, 1, False)


@pytest.mark.parametrize(
    "params",
    [
        {"page": 0},
        {"page": -1},
        {"pageSize": 0},
        {"pageSize": 201},
        {"pageSize": -5},
        {"page": "abc"},
        {"pageSize": "abc"},
        {"page": "1.5"},
        {"pageSize": "1.5"},
        {"page": ""},
        {"pageSize": "1e2"},
        {"limit": 0},
        {"limit": 201},
        {"limit": "abc"},
        {"limit": "2.0"},
    ],
)
def test_out_of_range_or_non_integer_pagination_is_400(api, params):
    body = assert_error(api.get("/companies", params), 400)
    assert set(body["details"]) == set(params)


def test_legacy_limit_is_the_page_size_when_page_and_page_size_are_omitted(api, entity):
    for i in range(4):
        factories.make_company(entity, name=f"Co {i}")
    body = api.get("/companies", {"limit": 3}).json()
    assert len(body["companies"]) == 3
    assert (body["page"], body["pageSize"], body["hasMore"]) == (1, 3, True)


def test_legacy_limit_is_ignored_when_page_is_given(api, entity):
    for i in range(4):
        factories.make_company(entity, name=f"Co {i}")
    body = api.get("/companies", {"limit": 1, "page": 1}).json()
    assert body["pageSize"] == 50
    assert len(body["companies"]) == 4


def test_legacy_limit_is_ignored_when_page_size_is_given(api, entity):
    for i in range(4):
        factories.make_company(entity, name=f"Co {i}")
    body = api.get("/companies", {"limit": 1, "pageSize": 3}).json()
    assert body["pageSize"] == 3
    assert len(body["companies"]) == 3


def test_total_counts_only_filtered_rows_of_the_entity(api, entity, other_entity):
    for i in range(3):
        factories.make_company(entity, name=f"Customer {i}", role="customer")
        factories.make_company(other_entity, name=f"Customer {i}", role="customer")
    factories.make_company(entity, name="Prospect")
    body = api.get("/companies", {"role": "customer", "pageSize": 1}).json()
    assert (body["total"], body["hasMore"]) == (3, True)
