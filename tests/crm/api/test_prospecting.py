"""`POST /api/crm/prospecting/add-to-marketing-list`, over HTTP with real API keys."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from crm.models import CompanyMembership, Contact
from marketing.models import MarketingListMember, MemberSource, MemberStatus
from tests import factories
from tests.helpers import assert_error

pytestmark = pytest.mark.django_db

URL = "/prospecting/add-to-marketing-list"


@pytest.fixture
def marketing_list(entity):
    return factories.make_list(entity, "Prospects")


def add(api, marketing_list, **ids):
    body = {"listId": str(marketing_list.pk)}
    body.update({key: [str(i) for i in values] for key, values in ids.items()})
    return api.post(URL, body)


def ok(response) -> dict:
    assert response.status_code == 200, response.content
    return response.json()


def member_emails(marketing_list) -> set[str]:
    return set(MarketingListMember.objects.filter(marketing_list=marketing_list).values_list("email", flat=True))


def test_adds_contacts_with_their_email_as_a_snapshot(api, entity, marketing_list):
    alice = factories.make_contact(entity, email="alice@example.com")
    bob = factories.make_contact(entity, email="bob@example.com")
    body = ok(add(api, marketing_list, contactIds=[alice.pk, bob.pk]))
    assert body == {"listId": str(marketing_list.pk), "added": 2, "alreadyOnList": 0, "skipped": []}

    member = MarketingListMember.objects.get(marketing_list=marketing_list, contact=alice)
    assert (member.email, member.status, member.source) == ("alice@example.com", "subscribed", "prospecting")
    assert member.entity_id == entity.pk
    Contact.objects.filter(pk=alice.pk).update(email="alice@new.example.com")
    member.refresh_from_db()
    assert member.email == "alice@example.com"


def test_a_company_contributes_every_contact_with_a_membership(api, entity, marketing_list):
    acme = factories.make_company(entity, name="Acme")
    primary = factories.make_contact(entity, email="p@acme.example", company=acme)
    no_email = factories.make_contact(entity, email=None, company=acme)
    secondary = factories.make_contact(entity, email="s@elsewhere.example")
    factories.make_membership(secondary, acme, is_primary=False)
    factories.make_contact(entity, email="stranger@example.com")  # no membership at Acme

    body = ok(add(api, marketing_list, companyIds=[acme.pk]))
    assert body["added"] == 2
    assert body["alreadyOnList"] == 0
    # The contact's id, not the company's: that is the record the caller can fix.
    assert body["skipped"] == [{"id": str(no_email.pk), "reason": "no_email"}]
    assert member_emails(marketing_list) == {"p@acme.example", "s@elsewhere.example"}
    assert primary.pk in set(marketing_list.members.values_list("contact_id", flat=True))


def test_a_company_without_contacts_adds_nothing_and_is_not_reported(api, entity, marketing_list):
    empty = factories.make_company(entity, name="Empty Inc")
    assert ok(add(api, marketing_list, companyIds=[empty.pk])) == {
        "listId": str(marketing_list.pk),
        "added": 0,
        "alreadyOnList": 0,
        "skipped": [],
    }


def test_a_lead_contributes_its_contact_and_a_lead_without_one_is_not_found(api, entity, marketing_list):
    contact = factories.make_contact(entity, email="lead@example.com")
    with_contact = factories.make_lead(entity, contact=contact)
    without_contact = factories.make_lead(entity, title="Orphan")
    body = ok(add(api, marketing_list, leadIds=[with_contact.pk, without_contact.pk]))
    assert body["added"] == 1
    assert body["skipped"] == [{"id": str(without_contact.pk), "reason": "not_found"}]
    assert member_emails(marketing_list) == {"lead@example.com"}


def test_a_contact_reached_several_ways_counts_once(api, entity, marketing_list):
    acme = factories.make_company(entity)
    shared = factories.make_contact(entity, email="shared@example.com", company=acme)
    nobody = factories.make_contact(entity, email=None, company=acme)
    lead = factories.make_lead(entity, contact=shared)
    nobody_lead = factories.make_lead(entity, contact=nobody)
    missing = uuid.uuid4()
    body = ok(
        add(
            api,
            marketing_list,
            contactIds=[shared.pk, shared.pk, nobody.pk, missing],
            companyIds=[acme.pk, acme.pk],
            leadIds=[lead.pk, nobody_lead.pk, lead.pk, missing],
        )
    )
    assert body["added"] == 1
    assert body["alreadyOnList"] == 0
    # Each contact and each unknown id is reported once, whatever the paths and repeats.
    assert sorted(body["skipped"], key=lambda s: s["id"]) == sorted(
        [{"id": str(nobody.pk), "reason": "no_email"}, {"id": str(missing), "reason": "not_found"}],
        key=lambda s: s["id"],
    )
    assert MarketingListMember.objects.filter(marketing_list=marketing_list).count() == 1


def test_adding_again_is_idempotent_and_counts_already_on_list(api, entity, marketing_list):
    acme = factories.make_company(entity)
    contacts = [factories.make_contact(entity, email=f"c{n}@example.com", company=acme) for n in range(3)]
    ok(add(api, marketing_list, contactIds=[contacts[0].pk]))
    body = ok(add(api, marketing_list, companyIds=[acme.pk]))
    assert (body["added"], body["alreadyOnList"], body["skipped"]) == (2, 1, [])
    body = ok(add(api, marketing_list, companyIds=[acme.pk], contactIds=[c.pk for c in contacts]))
    assert (body["added"], body["alreadyOnList"], body["skipped"]) == (0, 3, [])
    assert MarketingListMember.objects.filter(marketing_list=marketing_list).count() == 3


def test_unsubscribed_contacts_are_skipped_never_re_added(api, entity, marketing_list):
    acme = factories.make_company(entity)
    gone = factories.make_contact(entity, email="gone@example.com", company=acme)
    factories.make_contact(entity, email="stays@example.com", company=acme)
    factories.make_list_member(marketing_list, gone, status=MemberStatus.UNSUBSCRIBED, source=MemberSource.PROSPECTING)
    lead = factories.make_lead(entity, contact=gone)
    body = ok(add(api, marketing_list, companyIds=[acme.pk], leadIds=[lead.pk], contactIds=[gone.pk]))
    assert body["added"] == 1
    assert body["skipped"] == [{"id": str(gone.pk), "reason": "unsubscribed"}]
    statuses = dict(MarketingListMember.objects.filter(marketing_list=marketing_list).values_list("email", "status"))
    assert statuses == {"gone@example.com": "unsubscribed", "stays@example.com": "subscribed"}


def test_an_unsubscribed_address_stays_off_the_list_after_its_contact_is_deleted(api, entity, marketing_list):
    original = factories.make_contact(entity, email="optout@example.com")
    factories.make_list_member(marketing_list, original, status=MemberStatus.UNSUBSCRIBED, source=MemberSource.API)
    original.delete()
    again = factories.make_contact(entity, email="optout@example.com")
    body = ok(add(api, marketing_list, contactIds=[again.pk]))
    assert body["skipped"] == [{"id": str(again.pk), "reason": "unsubscribed"}]
    assert body["added"] == 0


def test_unsubscribed_on_another_list_does_not_matter(api, entity, marketing_list):
    contact = factories.make_contact(entity, email="two@example.com")
    factories.make_list_member(factories.make_list(entity, "Other"), contact, status=MemberStatus.UNSUBSCRIBED)
    assert ok(add(api, marketing_list, contactIds=[contact.pk]))["added"] == 1


def test_contacts_without_email_are_skipped(api, entity, marketing_list):
    no_email = factories.make_contact(entity, email=None)
    body = ok(add(api, marketing_list, contactIds=[no_email.pk]))
    assert body == {
        "listId": str(marketing_list.pk),
        "added": 0,
        "alreadyOnList": 0,
        "skipped": [{"id": str(no_email.pk), "reason": "no_email"}],
    }
    assert not MarketingListMember.objects.exists()


def test_unknown_and_other_entitys_ids_are_not_found(api, entity, other_entity, marketing_list):
    their_company = factories.make_company(other_entity)
    their_contact = factories.make_contact(other_entity, email="theirs@example.com", company=their_company)
    their_lead = factories.make_lead(other_entity, contact=their_contact)
    unknown = uuid.uuid4()
    body = ok(
        add(
            api,
            marketing_list,
            contactIds=[their_contact.pk, unknown],
            companyIds=[their_company.pk],
            leadIds=[their_lead.pk],
        )
    )
    assert body["added"] == 0 and body["alreadyOnList"] == 0
    assert body["skipped"] == [
        {"id": str(their_contact.pk), "reason": "not_found"},
        {"id": str(unknown), "reason": "not_found"},
        {"id": str(their_company.pk), "reason": "not_found"},
        {"id": str(their_lead.pk), "reason": "not_found"},
    ]
    assert not MarketingListMember.objects.exists()


def test_exactly_1000_ids_are_accepted(api, marketing_list):
    ids = [uuid.uuid4() for _ in range(1000)]
    body = ok(add(api, marketing_list, contactIds=ids[:400], companyIds=ids[400:700], leadIds=ids[700:]))
    assert len(body["skipped"]) == 1000


def test_more_than_1000_ids_in_all_is_400(api, marketing_list):
    ids = [uuid.uuid4() for _ in range(1001)]
    body = assert_error(add(api, marketing_list, contactIds=ids[:500], companyIds=ids[500:900], leadIds=ids[900:]), 400)
    assert "1000" in body["error"]
    assert_error(add(api, marketing_list, contactIds=ids), 400)


@pytest.mark.parametrize(
    "ids",
    [{}, {"contactIds": []}, {"contactIds": [], "companyIds": [], "leadIds": []}],
)
def test_no_ids_is_400(api, marketing_list, ids):
    assert_error(api.post(URL, {"listId": str(marketing_list.pk), **ids}), 400)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"contactIds": ["not-a-uuid"]}, "contactIds"),
        ({"companyIds": [5]}, "companyIds"),
        ({"leadIds": [None]}, "leadIds"),
        ({"contactIds": "0b0f0c9e-0000-4000-8000-000000000000"}, "contactIds"),
        ({"contactIds": [{"id": "x"}]}, "contactIds"),
        ({"contactIds": [], "colour": "red"}, "colour"),
    ],
)
def test_malformed_input_is_400_naming_the_field(api, marketing_list, payload, field):
    body = assert_error(api.post(URL, {"listId": str(marketing_list.pk), **payload}), 400)
    assert field in body["details"]


@pytest.mark.parametrize("list_id", ["nope", 7, None])
def test_malformed_list_id_is_400(api, entity, list_id):
    contact = factories.make_contact(entity, email="m@example.com")
    body = assert_error(api.post(URL, {"listId": list_id, "contactIds": [str(contact.pk)]}), 400)
    assert "listId" in body["details"]


def test_missing_list_id_is_400(api, entity):
    contact = factories.make_contact(entity, email="m@example.com")
    assert_error(api.post(URL, {"contactIds": [str(contact.pk)]}), 400)


def test_unknown_or_other_entitys_list_is_404(api, entity, other_entity):
    contact = factories.make_contact(entity, email="x@example.com")
    foreign_list = factories.make_list(other_entity, "Theirs")
    for list_id in (uuid.uuid4(), foreign_list.pk):
        assert_error(api.post(URL, {"listId": str(list_id), "contactIds": [str(contact.pk)]}), 404)
    assert not MarketingListMember.objects.exists()


def test_query_count_does_not_grow_with_the_number_of_ids(api, entity):
    def scenario(n: int) -> tuple[int, dict]:
        marketing_list = factories.make_list(entity, f"Bulk {n}")
        contacts = Contact.objects.bulk_create(
            Contact(entity=entity, first_name="C", last_name=str(i), email=f"bulk{n}-{i}@example.com") for i in range(n)
        )
        companies = [factories.make_company(entity) for _ in range(2)]
        CompanyMembership.objects.bulk_create(
            CompanyMembership(entity=entity, contact=c, company=companies[i % 2], is_primary=True)
            for i, c in enumerate(contacts)
        )
        leads = [factories.make_lead(entity, contact=contacts[i]) for i in range(min(n, 5))]
        # Half of them already on the list, so the existing-member path is exercised too.
        MarketingListMember.objects.bulk_create(
            MarketingListMember(entity=entity, marketing_list=marketing_list, contact=c, email=c.email)
            for c in contacts[: n // 2]
        )
        with CaptureQueriesContext(connection) as ctx:
            body = ok(
                add(
                    api,
                    marketing_list,
                    contactIds=[c.pk for c in contacts],
                    companyIds=[c.pk for c in companies],
                    leadIds=[lead.pk for lead in leads],
                )
            )
        return len(ctx.captured_queries), body

    ok(add(api, factories.make_list(entity, "warm-up"), contactIds=[uuid.uuid4()]))
    small_queries, small = scenario(10)
    large_queries, large = scenario(300)
    assert (small["added"], small["alreadyOnList"]) == (5, 5)
    assert (large["added"], large["alreadyOnList"]) == (150, 150)
    assert large_queries == small_queries
    assert small_queries <= 15


# --- authentication and scopes -------------------------------------------------------------------


def test_no_credentials_is_401(client, entity, marketing_list):
    response = client.post(
        f"/api/crm{URL}?entityId={entity.pk}",
        data={"listId": str(marketing_list.pk), "contactIds": [str(uuid.uuid4())]},
        content_type="application/json",
    )
    assert_error(response, 401)


@pytest.mark.parametrize(
    "scopes",
    [("read:crm",), ("read:marketing", "write:marketing"), ("read:crm", "write:marketing")],
)
def test_needs_write_crm(make_api, entity, marketing_list, scopes):
    contact = factories.make_contact(entity, email="s@example.com")
    client = make_api(scopes=scopes)
    assert_error(add(client, marketing_list, contactIds=[contact.pk]), 403)
    assert not MarketingListMember.objects.exists()


def test_write_crm_alone_is_enough(make_api, entity, marketing_list):
    contact = factories.make_contact(entity, email="w@example.com")
    assert ok(add(make_api(scopes=("write:crm",)), marketing_list, contactIds=[contact.pk]))["added"] == 1


def test_get_is_not_allowed(api):
    assert_error(api.get(URL), 405)


@pytest.mark.django_db(transaction=True)
def test_concurrent_adds_to_one_list_add_each_contact_once(make_api, entity):
    marketing_list = factories.make_list(entity, "Race")
    contacts = Contact.objects.bulk_create(
        Contact(entity=entity, first_name="R", last_name=str(i), email=f"race{i}@example.com") for i in range(60)
    )
    ids = [str(c.pk) for c in contacts]
    results: list[dict] = []
    errors: list = []

    def worker(offset: int) -> None:
        client = make_api()  # each thread its own client (and database connection)
        try:
            # Overlapping slices, so both requests want most of the same contacts.
            response = client.post(URL, {"listId": str(marketing_list.pk), "contactIds": ids[offset : offset + 50]})
            results.append({"status": response.status_code, **response.json()})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(offset,)) for offset in (0, 10, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert [r["status"] for r in results] == [200, 200, 200]
    # The list lock serialises the adds: every contact is added exactly once and the counts are exact.
    assert sum(r["added"] for r in results) == 60
    assert all(r["added"] + r["alreadyOnList"] == 50 for r in results)
    assert MarketingListMember.objects.filter(marketing_list=marketing_list).count() == 60
