"""`/api/marketing/lists` and members, over HTTP with real API keys."""

from __future__ import annotations

import pytest

from marketing.models import MarketingList, MarketingListMember, MemberStatus
from tests import factories
from tests.helpers import assert_error

pytestmark = pytest.mark.django_db

ADD_URL = "/api/crm/prospecting/add-to-marketing-list"


@pytest.fixture
def mapi(make_api):
    """Every scope, addressing /api/marketing by default."""
    return make_api(prefix="/api/marketing")


# --- lists ---------------------------------------------------------------------------------------


def test_create_list_answers_201_with_the_list(mapi, entity):
    response = mapi.post("/lists", {"name": "  Newsletter  ", "description": "Monthly news"})
    assert response.status_code == 201, response.content
    body = response.json()["list"]
    assert set(body) == {"id", "name", "description", "memberCount", "createdAt"}
    assert body["name"] == "Newsletter"
    assert body["description"] == "Monthly news"
    assert body["memberCount"] == 0
    assert body["createdAt"].endswith("Z")
    assert MarketingList.objects.for_entity(entity).get(pk=body["id"]).name == "Newsletter"


def test_create_list_defaults_description_to_empty(mapi):
    response = mapi.post("/lists", {"name": "Webinar"})
    assert response.status_code == 201, response.content
    assert response.json()["list"]["description"] == ""


def test_list_name_taken_is_409_with_existing_id_case_insensitively(mapi, entity):
    existing = factories.make_list(entity, "Newsletter")
    body = assert_error(mapi.post("/lists", {"name": "newsletter"}), 409)
    assert body["existingId"] == str(existing.pk)


@pytest.mark.parametrize(("first", "second"), [("Kiosk", "\u212aiosk"), ("\u212aiosk", "kiosk")])
def test_list_name_equal_only_in_lower_case_is_409_not_500(mapi, entity, first, second):
    # The Kelvin sign lowers to "k" (as the unique constraint compares) but does not upper to "K".
    existing = factories.make_list(entity, first)
    body = assert_error(mapi.post("/lists", {"name": second}), 409)
    assert body["existingId"] == str(existing.pk)
    mine = factories.make_list(entity, "Prospects")
    body = assert_error(mapi.patch(f"/lists/{mine.pk}", {"name": second}), 409)
    assert body["existingId"] == str(existing.pk)


def test_same_list_name_in_another_entity_is_fine(mapi, other_entity):
    factories.make_list(other_entity, "Newsletter")
    assert mapi.post("/lists", {"name": "Newsletter"}).status_code == 201


def test_rename_onto_a_taken_name_is_409_but_own_name_in_other_case_is_ok(mapi, entity):
    taken = factories.make_list(entity, "Customers")
    mine = factories.make_list(entity, "Prospects")
    body = assert_error(mapi.patch(f"/lists/{mine.pk}", {"name": "CUSTOMERS"}), 409)
    assert body["existingId"] == str(taken.pk)
    response = mapi.patch(f"/lists/{mine.pk}", {"name": "PROSPECTS"})
    assert response.status_code == 200
    assert response.json()["list"]["name"] == "PROSPECTS"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": 5, "description": ["no"]}, "description"),
    ],
)
def test_create_list_rejects_invalid_input(mapi, payload, field):
    body = assert_error(mapi.post("/lists", payload), 400)
    assert field in body["details"]


def test_create_list_rejects_a_json_array_body(mapi):
    assert_error(mapi.post("/lists", ["Newsletter"]), 400)


def test_get_patch_delete_a_list(mapi, entity):
    marketing_list = factories.make_list(entity, "Events", description="old")
    contact = factories.make_contact(entity, email="a@example.com")
    factories.make_list_member(marketing_list, contact)

    got = mapi.get(f"/lists/{marketing_list.pk}")
    assert got.status_code == 200
    assert got.json()["list"]["memberCount"] == 1

    patched = mapi.patch(f"/lists/{marketing_list.pk}", {"description": "new"})
    assert patched.status_code == 200
    assert patched.json()["list"] == {**got.json()["list"], "description": "new"}

    deleted = mapi.delete(f"/lists/{marketing_list.pk}")
    assert deleted.status_code == 200
    assert deleted.json() == {"ok": True}
    assert not MarketingList.objects.filter(pk=marketing_list.pk).exists()
    assert not MarketingListMember.objects.filter(marketing_list_id=marketing_list.pk).exists()
    assert_error(mapi.get(f"/lists/{marketing_list.pk}"), 404)


def test_malformed_list_id_in_path_is_404(mapi):
    assert_error(mapi.get("/lists/not-a-uuid"), 404)
    assert_error(mapi.get("/lists/not-a-uuid/members"), 404)


def test_list_lists_paginates_by_name_with_member_counts(mapi, entity, other_entity):
    b = factories.make_list(entity, "Bravo")
    a = factories.make_list(entity, "Alpha")
    factories.make_list(entity, "Charlie")
    factories.make_list(other_entity, "Other")
    for n in range(3):
        factories.make_list_member(b, factories.make_contact(entity, email=f"b{n}@example.com"))
    factories.make_list_member(
        a, factories.make_contact(entity, email="a@example.com"), status=MemberStatus.UNSUBSCRIBED
    )

    response = mapi.get("/lists", {"pageSize": 2})
    assert response.status_code == 200
    body = response.json()
    assert [item["name"] for item in body["lists"]] == ["Alpha", "Bravo"]
    assert body["total"] == 3 and body["hasMore"] is True and body["page"] == 1 and body["pageSize"] == 2
    counts = {item["name"]: item["memberCount"] for item in mapi.get("/lists").json()["lists"]}
    assert counts == {"Alpha": 1, "Bravo": 3, "Charlie": 0}
    assert [item["name"] for item in mapi.get("/lists", {"q": "RAV"}).json()["lists"]] == ["Bravo"]


# --- members -------------------------------------------------------------------------------------


def test_members_are_listed_newest_first_with_pagination_and_filters(mapi, entity):
    marketing_list = factories.make_list(entity)
    contacts = [factories.make_contact(entity, email=f"m{n}@example.com") for n in range(3)]
    members = [factories.make_list_member(marketing_list, c) for c in contacts]
    members[1].status = MemberStatus.UNSUBSCRIBED
    members[1].save()

    response = mapi.get(f"/lists/{marketing_list.pk}/members", {"pageSize": 2})
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 3 and body["hasMore"] is True
    assert [m["email"] for m in body["members"]] == ["m2@example.com", "m1@example.com"]
    assert body["members"][0] == {
        "id": str(members[2].pk),
        "contactId": str(contacts[2].pk),
        "email": "m2@example.com",
        "status": "subscribed",
        "source": "admin",
        "addedAt": members[2].added_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    unsubscribed = mapi.get(f"/lists/{marketing_list.pk}/members", {"status": "unsubscribed"}).json()
    assert [m["id"] for m in unsubscribed["members"]] == [str(members[1].pk)]
    assert_error(mapi.get(f"/lists/{marketing_list.pk}/members", {"status": "maybe"}), 400)


def test_delete_member_answers_ok_and_removes_the_row(mapi, entity):
    marketing_list = factories.make_list(entity)
    member = factories.make_list_member(marketing_list, factories.make_contact(entity, email="x@example.com"))
    response = mapi.delete(f"/lists/{marketing_list.pk}/members/{member.pk}")
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert not MarketingListMember.objects.filter(pk=member.pk).exists()
    assert_error(mapi.delete(f"/lists/{marketing_list.pk}/members/{member.pk}"), 404)


def test_member_of_another_list_is_404(mapi, entity):
    mine = factories.make_list(entity, "Mine")
    other_list = factories.make_list(entity, "Other list")
    member = factories.make_list_member(other_list, factories.make_contact(entity, email="y@example.com"))

    assert_error(mapi.delete(f"/lists/{mine.pk}/members/{member.pk}"), 404)
    assert_error(mapi.post(f"/lists/{mine.pk}/members/{member.pk}/unsubscribe"), 404)
    assert MarketingListMember.objects.get(pk=member.pk).status == "subscribed"


def test_unsubscribe_keeps_the_row_and_blocks_adding_again(mapi, api, entity):
    marketing_list = factories.make_list(entity)
    contact = factories.make_contact(entity, email="keep@example.com")
    member = factories.make_list_member(marketing_list, contact)

    response = mapi.post(f"/lists/{marketing_list.pk}/members/{member.pk}/unsubscribe")
    assert response.status_code == 200, response.content
    assert response.json()["member"]["status"] == "unsubscribed"
    assert response.json()["member"]["id"] == str(member.pk)
    member.refresh_from_db()
    assert member.status == MemberStatus.UNSUBSCRIBED
    first_unsubscribed_at = member.unsubscribed_at
    assert first_unsubscribed_at is not None

    again = mapi.post(f"/lists/{marketing_list.pk}/members/{member.pk}/unsubscribe")  # idempotent
    assert again.status_code == 200
    member.refresh_from_db()
    assert member.unsubscribed_at == first_unsubscribed_at

    added = api.post(ADD_URL, {"listId": str(marketing_list.pk), "contactIds": [str(contact.pk)]})
    assert added.status_code == 200
    assert added.json() == {
        "listId": str(marketing_list.pk),
        "added": 0,
        "alreadyOnList": 0,
        "skipped": [{"id": str(contact.pk), "reason": "unsubscribed"}],
    }
    assert MarketingListMember.objects.get(pk=member.pk).status == MemberStatus.UNSUBSCRIBED
    assert mapi.get(f"/lists/{marketing_list.pk}").json()["list"]["memberCount"] == 1


def test_deleting_a_contact_keeps_its_member_rows_with_the_email(mapi, entity):
    marketing_list = factories.make_list(entity)
    contact = factories.make_contact(entity, email="gone@example.com")
    member = factories.make_list_member(marketing_list, contact)
    contact.delete()
    body = mapi.get(f"/lists/{marketing_list.pk}/members").json()
    assert body["members"] == [
        {
            "id": str(member.pk),
            "contactId": None,
            "email": "gone@example.com",
            "status": "subscribed",
            "source": "admin",
            "addedAt": member.added_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
    ]
