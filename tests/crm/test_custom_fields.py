"""Custom fields (CONTRACT §13): definitions, values on companies/contacts/leads, uniqueness."""

from __future__ import annotations

import uuid

import pytest

from axiomatic.models import Membership
from crm.models import Company, CustomField
from crm.services.custom_fields import MAX_FIELDS_PER_TYPE
from tests import factories
from tests.helpers import assert_error

FIELDS = "/custom-fields"


def define(api, **body) -> dict:
    body.setdefault("objectType", "company")
    body.setdefault("label", body.get("key", "Field").replace("_", " ").title())
    body.setdefault("type", "text")
    response = api.post(FIELDS, body)
    assert response.status_code == 201, response.content
    return response.json()["customField"]


def company(api, **body) -> dict:
    body.setdefault("name", "Acme")
    response = api.post("/companies", body)
    assert response.status_code == 201, response.content
    return response.json()["company"]


def patch_company(api, company_id, **body):
    return api.patch(f"/companies/{company_id}", body)


# --- definitions ----------------------------------------------------------------------------------


def test_create_answers_the_whole_definition(api):
    field = define(api, key="territory", label="Region", type="select", options=[{"value": "emea", "label": "EMEA"}])
    assert set(field) == {
        "id",
        "objectType",
        "key",
        "label",
        "type",
        "options",
        "required",
        "unique",
        "description",
        "sortOrder",
        "createdAt",
        "updatedAt",
    }
    assert field["options"] == [{"value": "emea", "label": "EMEA"}]
    assert field["required"] is False and field["unique"] is False and field["sortOrder"] == 0
    assert field["createdAt"].endswith("Z")


def test_list_is_in_object_type_then_sort_order_and_filters_by_object_type(api):
    define(api, key="b_field", objectType="lead")
    define(api, key="zeta")
    define(api, key="alpha")
    define(api, key="c_field", objectType="contact")
    body = api.get(FIELDS).json()
    assert [(f["objectType"], f["key"]) for f in body["customFields"]] == [
        ("company", "zeta"),
        ("company", "alpha"),
        ("contact", "c_field"),
        ("lead", "b_field"),
    ]
    assert [f["key"] for f in api.get(FIELDS, {"objectType": "lead"}).json()["customFields"]] == ["b_field"]
    assert_error(api.get(FIELDS, {"objectType": "deal"}), 400)


@pytest.mark.parametrize("key", ["Region", "1abc", "_x", "a-b", "a" * 41, "", "région"])
def test_malformed_keys_are_refused(api, key):
    body = assert_error(api.post(FIELDS, {"objectType": "company", "key": key, "label": "X", "type": "text"}), 400)
    assert "key" in body["details"]


def test_a_key_of_40_characters_is_accepted(api):
    define(api, key="a" * 40)


@pytest.mark.parametrize(
    "object_type,key", [("company", "name"), ("company", "domain"), ("contact", "email"), ("lead", "stage_id")]
)
def test_built_in_field_names_are_refused(api, object_type, key):
    body = assert_error(api.post(FIELDS, {"objectType": object_type, "key": key, "label": "X", "type": "text"}), 400)
    assert "built-in" in body["error"]


def test_a_built_in_name_of_another_object_is_fine(api):
    define(api, key="title", objectType="company")


def test_duplicate_key_is_409_with_existing_id_but_other_object_types_may_reuse_it(api):
    first = define(api, key="tier")
    body = assert_error(api.post(FIELDS, {"objectType": "company", "key": "tier", "label": "T", "type": "text"}), 409)
    assert body["existingId"] == first["id"]
    define(api, key="tier", objectType="lead")


def test_options_are_required_for_select_and_refused_elsewhere(api):
    for body in (
        {"type": "select"},
        {"type": "multiselect", "options": []},
        {"type": "text", "options": [{"value": "a", "label": "A"}]},
        {"type": "select", "options": [{"value": "A", "label": "A"}]},
        {"type": "select", "options": [{"value": "a", "label": "A"}, {"value": "a", "label": "B"}]},
        {"type": "select", "options": [{"value": f"o{i}", "label": "x"} for i in range(201)]},
    ):
        assert_error(api.post(FIELDS, {"objectType": "company", "key": "k", "label": "K", **body}), 400)
    define(api, key="k", type="select", options=[{"value": f"o{i}", "label": "x"} for i in range(200)])


@pytest.mark.parametrize("kind", ["date", "datetime", "boolean", "select", "multiselect", "user", "currency"])
def test_unique_is_only_for_text_number_email_url(api, kind):
    body = {"objectType": "company", "key": "k", "label": "K", "type": kind, "unique": True}
    if kind in ("select", "multiselect"):
        body["options"] = [{"value": "a", "label": "A"}]
    assert "unique" in assert_error(api.post(FIELDS, body), 400)["details"]


def test_unknown_type_and_object_type_are_400(api):
    assert_error(api.post(FIELDS, {"objectType": "company", "key": "k", "label": "K", "type": "money"}), 400)
    assert_error(api.post(FIELDS, {"objectType": "deal", "key": "k", "label": "K", "type": "text"}), 400)


def test_at_most_100_fields_per_object_type(api, entity):
    CustomField.objects.bulk_create(
        CustomField(entity=entity, object_type="company", key=f"f{i}", label="F", type="text", sort_order=i)
        for i in range(MAX_FIELDS_PER_TYPE)
    )
    assert_error(api.post(FIELDS, {"objectType": "company", "key": "one_more", "label": "X", "type": "text"}), 409)
    define(api, key="one_more", objectType="lead")


@pytest.mark.parametrize("change", [{"key": "other"}, {"type": "number"}, {"objectType": "lead"}, {"unique": True}])
def test_key_type_object_type_and_unique_are_immutable(api, change):
    field = define(api, key="code")
    body = assert_error(api.patch(f"{FIELDS}/{field['id']}", change), 400)
    assert list(body["details"]) == [next(iter(change))]


def test_patch_changes_label_description_required_and_sort_order(api):
    first, second, third = define(api, key="a1"), define(api, key="a2"), define(api, key="a3")
    response = api.patch(
        f"{FIELDS}/{third['id']}", {"label": "Third", "description": "Why", "required": True, "sortOrder": 0}
    )
    assert response.status_code == 200, response.content
    changed = response.json()["customField"]
    assert (changed["label"], changed["description"], changed["required"], changed["sortOrder"]) == (
        "Third",
        "Why",
        True,
        0,
    )
    assert [f["key"] for f in api.get(FIELDS).json()["customFields"]] == ["a3", "a1", "a2"]
    assert [f["sortOrder"] for f in api.get(FIELDS).json()["customFields"]] == [0, 1, 2]
    del first, second


def test_removing_an_option_held_by_records_is_409_with_the_count(api):
    options = [{"value": "emea", "label": "EMEA"}, {"value": "apac", "label": "APAC"}]
    field = define(api, key="territory", type="select", options=options)
    tags = define(
        api, key="tags", type="multiselect", options=[{"value": "vip", "label": "VIP"}, {"value": "new", "label": "N"}]
    )
    company(api, name="A", customFields={"territory": "emea", "tags": ["vip", "new"]})
    company(api, name="B", customFields={"territory": "emea", "tags": ["vip"]})
    body = assert_error(api.patch(f"{FIELDS}/{field['id']}", {"options": [options[1]]}), 409)
    assert "2 records" in body["error"]
    body = assert_error(api.patch(f"{FIELDS}/{tags['id']}", {"options": [{"value": "new", "label": "N"}]}), 409)
    assert "2 records" in body["error"]
    # relabelling, adding, and removing an unused option are fine
    response = api.patch(
        f"{FIELDS}/{field['id']}",
        {"options": [{"value": "emea", "label": "Europe"}, {"value": "amer", "label": "Americas"}]},
    )
    assert response.status_code == 200, response.content
    assert [o["value"] for o in response.json()["customField"]["options"]] == ["emea", "amer"]


def test_members_may_read_but_not_write_definitions(make_api, entity):
    member = make_api(user=factories.make_member(entity, role=Membership.Role.MEMBER))
    admin = make_api(user=factories.make_member(entity, role=Membership.Role.ADMIN))
    field = define(admin, key="code")
    assert member.get(FIELDS).status_code == 200
    for response in (
        member.post(FIELDS, {"objectType": "company", "key": "x", "label": "X", "type": "text"}),
        member.patch(f"{FIELDS}/{field['id']}", {"label": "Y"}),
        member.delete(f"{FIELDS}/{field['id']}"),
    ):
        assert "admin role" in assert_error(response, 403)["error"]


def test_scopes_apply(make_api):
    reader = make_api(scopes=("read:crm",))
    writer = make_api(scopes=("write:crm",))
    assert_error(reader.post(FIELDS, {"objectType": "company", "key": "x", "label": "X", "type": "text"}), 403)
    assert_error(writer.get(FIELDS), 403)


def test_another_entitys_field_is_404_and_its_definitions_never_apply(api, other_api):
    theirs = define(other_api, key="secret", required=True)
    assert_error(api.patch(f"{FIELDS}/{theirs['id']}", {"label": "Mine"}), 404)
    assert_error(api.delete(f"{FIELDS}/{theirs['id']}"), 404)
    assert_error(api.get(f"{FIELDS}/{theirs['id']}"), 404)
    assert api.get(FIELDS).json()["customFields"] == []
    mine = company(api)  # their required field does not apply here
    assert mine["customFields"] == {}
    body = assert_error(api.post("/companies", {"name": "X", "customFields": {"secret": "x"}}), 400)
    assert body["details"] == {"customFields.secret": ["Unknown custom field."]}


# --- values ---------------------------------------------------------------------------------------


def test_every_defined_key_is_in_every_response_null_when_unset(api):
    define(api, key="code")
    define(api, key="seats", type="number")
    created = company(api, customFields={"code": "C-1"})
    assert created["customFields"] == {"code": "C-1", "seats": None}
    assert api.get(f"/companies/{created['id']}").json()["company"]["customFields"] == {"code": "C-1", "seats": None}
    listed = api.get("/companies").json()["companies"][0]
    assert listed["customFields"] == {"code": "C-1", "seats": None}


def test_patch_merges_and_null_clears(api):
    define(api, key="code")
    define(api, key="seats", type="number")
    created = company(api, customFields={"code": "C-1", "seats": 5})
    response = patch_company(api, created["id"], customFields={"seats": "7.50"})
    assert response.json()["company"]["customFields"] == {"code": "C-1", "seats": "7.5"}
    response = patch_company(api, created["id"], customFields={"code": None})
    assert response.json()["company"]["customFields"] == {"code": None, "seats": "7.5"}
    response = patch_company(api, created["id"], name="Renamed")
    assert response.json()["company"]["customFields"] == {"code": None, "seats": "7.5"}


def test_custom_fields_must_be_an_object(api):
    assert_error(api.post("/companies", {"name": "A", "customFields": ["x"]}), 400)
    assert_error(api.post("/companies", {"name": "A", "customFields": "x"}), 400)


def test_required_field_must_be_given_on_create_and_cannot_be_cleared(api):
    define(api, key="code", required=True)
    body = assert_error(api.post("/companies", {"name": "A"}), 400)
    assert body["details"] == {"customFields.code": ["This field is required."]}
    assert_error(api.post("/companies", {"name": "A", "customFields": {"code": None}}), 400)
    assert_error(api.post("/companies", {"name": "A", "customFields": {"code": "  "}}), 400)
    created = company(api, customFields={"code": "X"})
    body = assert_error(patch_company(api, created["id"], customFields={"code": None}), 400)
    assert "customFields.code" in body["details"]
    assert patch_company(api, created["id"], name="B").status_code == 200


def test_making_a_field_required_leaves_existing_records_alone(api):
    field = define(api, key="code")
    created = company(api)
    assert api.patch(f"{FIELDS}/{field['id']}", {"required": True}).status_code == 200
    response = patch_company(api, created["id"], name="Still fine")
    assert response.status_code == 200 and response.json()["company"]["customFields"] == {"code": None}


def test_errors_name_every_bad_key_with_its_details(api):
    define(api, key="seats", type="number")
    define(api, key="flag", type="boolean")
    body = assert_error(
        api.post("/companies", {"name": "A", "customFields": {"seats": "x", "flag": 1, "nope": 1}}), 400
    )
    assert set(body["details"]) == {"customFields.seats", "customFields.flag", "customFields.nope"}
    assert "customFields.seats" in body["error"]


OPTIONS = [{"value": "emea", "label": "EMEA"}, {"value": "apac", "label": "APAC"}, {"value": "amer", "label": "AM"}]

VALID = [
    ("text", {}, "  hello  ", "hello"),
    ("text", {}, "x" * 2000, "x" * 2000),
    ("text", {}, "", None),
    ("number", {}, 12, "12"),
    ("number", {}, "12.50", "12.5"),
    ("number", {}, -3.25, "-3.25"),
    ("number", {}, "999999999999.999999", "999999999999.999999"),
    ("number", {}, "0.000001", "0.000001"),
    ("number", {}, "-0", "0"),
    ("number", {}, 1e5, "100000"),
    ("date", {}, "2026-02-28", "2026-02-28"),
    ("datetime", {}, "2026-03-01T10:30:00+02:00", "2026-03-01T08:30:00.000000Z"),
    ("datetime", {}, "2026-03-01T08:30:00.123Z", "2026-03-01T08:30:00.123000Z"),
    ("boolean", {}, True, True),
    ("boolean", {}, False, False),
    ("select", {"options": OPTIONS}, "apac", "apac"),
    ("multiselect", {"options": OPTIONS}, ["amer", "emea"], ["emea", "amer"]),
    ("multiselect", {"options": OPTIONS}, [], None),
    ("url", {}, "https://example.com/a?b=c", "https://example.com/a?b=c"),
    ("url", {}, "http://example.com", "http://example.com"),
    ("email", {}, " Ada@Example.COM ", "ada@example.com"),
    ("currency", {}, {"currency": "EUR", "amount": "12.5"}, {"currency": "EUR", "amount": "12.50"}),
    ("currency", {}, {"currency": "USD", "amount": 3}, {"currency": "USD", "amount": "3.00"}),
    (
        "currency",
        {},
        {"currency": "JPY", "amount": "999999999999.99"},
        {"currency": "JPY", "amount": "999999999999.99"},
    ),
]

INVALID = [
    ("text", {}, "x" * 2001),
    ("text", {}, 5),
    ("text", {}, ["a"]),
    ("number", {}, "1e5"),
    ("number", {}, "abc"),
    ("number", {}, True),
    ("number", {}, "1234567890123"),
    ("number", {}, "0.0000001"),
    ("number", {}, " "),
    ("number", {}, {"a": 1}),
    ("date", {}, "2026-02-30"),
    ("date", {}, "26-02-01"),
    ("date", {}, "2026-02-01T00:00:00Z"),
    ("date", {}, 20260201),
    ("datetime", {}, "2026-03-01T10:30:00"),
    ("datetime", {}, "yesterday"),
    ("datetime", {}, "0999-03-01T10:30:00Z"),
    ("boolean", {}, "true"),
    ("boolean", {}, 1),
    ("select", {"options": OPTIONS}, "EMEA"),
    ("select", {"options": OPTIONS}, ["emea"]),
    ("multiselect", {"options": OPTIONS}, "emea"),
    ("multiselect", {"options": OPTIONS}, ["emea", "emea"]),
    ("multiselect", {"options": OPTIONS}, ["mars"]),
    ("url", {}, "ftp://example.com"),
    ("url", {}, "example.com"),
    ("url", {}, "https://" + "a" * 2000 + ".com"),
    ("email", {}, "not-an-email"),
    ("email", {}, 3),
    ("user", {}, "not-a-uuid"),
    ("user", {}, "6f1c2a0e-0000-4000-8000-000000000001"),  # no such member (fixed: xdist workers must collect alike)
    ("currency", {}, {"currency": "EUR"}),
    ("currency", {}, {"currency": "EURO", "amount": "1"}),
    ("currency", {}, {"currency": "eur", "amount": "1"}),
    ("currency", {}, {"currency": "EUR", "amount": "1.234"}),
    ("currency", {}, {"currency": "EUR", "amount": "-1"}),
    ("currency", {}, {"currency": "EUR", "amount": "1", "extra": 1}),
    ("currency", {}, "12.50 EUR"),
]


@pytest.mark.parametrize("kind,extra,given,expected", VALID)
def test_each_type_takes_valid_values_in_their_stored_form(api, kind, extra, given, expected):
    define(api, key="value", type=kind, **extra)
    created = company(api, customFields={"value": given})
    assert created["customFields"]["value"] == expected
    assert api.get(f"/companies/{created['id']}").json()["company"]["customFields"]["value"] == expected


@pytest.mark.parametrize("kind,extra,given", INVALID)
def test_each_type_refuses_invalid_values_naming_the_key(api, kind, extra, given):
    define(api, key="value", type=kind, **extra)
    body = assert_error(api.post("/companies", {"name": "A", "customFields": {"value": given}}), 400)
    assert list(body["details"]) == ["customFields.value"]
    assert Company.objects.count() == 0


def test_user_field_takes_a_members_id(api, entity, user):
    define(api, key="account_manager", type="user")
    colleague = factories.make_member(entity)
    created = company(api, customFields={"account_manager": str(colleague.pk)})
    assert created["customFields"]["account_manager"] == str(colleague.pk)
    outsider = factories.make_user()
    body = assert_error(patch_company(api, created["id"], customFields={"account_manager": str(outsider.pk)}), 400)
    assert "not a member" in body["details"]["customFields.account_manager"][0]


def test_contacts_and_leads_carry_their_own_fields(api):
    define(api, key="shoe_size", type="number", objectType="contact")
    define(api, key="deal_code", objectType="lead", required=True)
    contact = api.post("/contacts", {"firstName": "Ada", "customFields": {"shoe_size": 38}}).json()["contact"]
    assert contact["customFields"] == {"shoe_size": "38"}
    assert_error(api.post("/contacts", {"firstName": "Ada", "customFields": {"deal_code": "x"}}), 400)
    assert_error(api.post("/leads", {"title": "Deal"}), 400)
    lead = api.post("/leads", {"title": "Deal", "customFields": {"deal_code": "D-1"}}).json()["lead"]
    assert lead["customFields"] == {"deal_code": "D-1"}
    response = api.patch(f"/contacts/{contact['id']}", {"customFields": {"shoe_size": None}})
    assert response.json()["contact"]["customFields"] == {"shoe_size": None}
    response = api.patch(f"/leads/{lead['id']}", {"customFields": {"deal_code": "D-2"}})
    assert response.json()["lead"]["customFields"] == {"deal_code": "D-2"}


# --- deletion -------------------------------------------------------------------------------------


def test_deleting_a_field_hides_its_values_at_once_and_a_new_field_with_the_key_starts_empty(
    api, entity, django_capture_on_commit_callbacks
):
    field = define(api, key="code")
    created = company(api, customFields={"code": "C-1"})
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"{FIELDS}/{field['id']}").status_code == 204
    assert api.get(f"/companies/{created['id']}").json()["company"]["customFields"] == {}
    define(api, key="code", type="text")
    assert api.get(f"/companies/{created['id']}").json()["company"]["customFields"] == {"code": None}
    # the clean-up task (eager here) removed the old value from the row
    stored = Company.objects.get(pk=created["id"]).custom_fields
    assert all(key != "f" + uuid.UUID(field["id"]).hex for key in stored)


def test_deleting_an_unknown_field_is_404(api):
    assert_error(api.delete(f"{FIELDS}/{uuid.uuid4()}"), 404)


# --- uniqueness -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind,first,same",
    [
        ("text", "INV-1", "INV-1"),
        ("number", "12.50", 12.5),
        ("email", "a@x.com", "A@X.com"),
        ("url", "https://a.io", "https://a.io"),
    ],
)
def test_unique_fields_refuse_a_second_record_with_the_same_value(api, kind, first, same):
    define(api, key="ident", type=kind, unique=True)
    holder = company(api, name="A", customFields={"ident": first})
    body = assert_error(api.post("/companies", {"name": "B", "customFields": {"ident": same}}), 409)
    assert body["existingId"] == holder["id"]
    other = company(api, name="C")
    body = assert_error(patch_company(api, other["id"], customFields={"ident": same}), 409)
    assert body["existingId"] == holder["id"]
    # the holder may keep (re-send) its own value, and clearing frees it
    assert patch_company(api, holder["id"], customFields={"ident": first}).status_code == 200
    assert patch_company(api, holder["id"], customFields={"ident": None}).status_code == 200
    assert patch_company(api, other["id"], customFields={"ident": same}).status_code == 200


def test_unique_values_are_per_entity(api, other_api):
    define(api, key="ident", unique=True)
    define(other_api, key="ident", unique=True)
    company(api, customFields={"ident": "X"})
    company(other_api, customFields={"ident": "X"})


def test_unique_contact_and_lead_fields(api):
    define(api, key="badge", objectType="contact", unique=True)
    define(api, key="po", objectType="lead", unique=True, type="number")
    holder = api.post("/contacts", {"firstName": "A", "customFields": {"badge": "b1"}}).json()["contact"]
    body = assert_error(api.post("/contacts", {"firstName": "B", "customFields": {"badge": "b1"}}), 409)
    assert body["existingId"] == holder["id"]
    lead = api.post("/leads", {"title": "L", "customFields": {"po": 7}}).json()["lead"]
    body = assert_error(api.post("/leads", {"title": "M", "customFields": {"po": "7.0"}}), 409)
    assert body["existingId"] == lead["id"]


def test_deleting_a_unique_field_drops_its_rule(api):
    field = define(api, key="ident", unique=True)
    company(api, name="A", customFields={"ident": "X"})
    api.delete(f"{FIELDS}/{field['id']}")
    define(api, key="ident")
    company(api, name="A2", customFields={"ident": "X"})
    company(api, name="A3", customFields={"ident": "X"})
