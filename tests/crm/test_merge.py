"""Merging contacts and companies (§16): every reverse relation moves (walked from `_meta`), folds,
primary and unsubscribe rules, fields and custom fields, dry runs, refusals, tombstones, change
feed, timeline, counters and bounded query counts."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from axiomatic.models_changes import Change
from crm.models import (
    Activity,
    Company,
    CompanyMembership,
    Contact,
    Lead,
    LeadEvent,
    OutboundEmail,
    OutboundEmailConnection,
)
from crm.services.merge import FOLDED, MOVED_KEYS, relation_plan
from marketing.models import MarketingListMember
from tests import factories
from tests.helpers import assert_error

pytestmark = pytest.mark.django_db


def changes_since(entity, last: int) -> list[Change]:
    """The changes recorded after `last` (ids: `seq` is only given at commit)."""
    return list(Change.objects.filter(entity_id=entity.pk, id__gt=last).order_by("id"))


def last_seq(entity) -> int:
    return Change.objects.filter(entity_id=entity.pk).order_by("-id").values_list("id", flat=True).first() or 0


# --- every relation, from _meta -----------------------------------------------------------------------


@pytest.mark.parametrize("model", [Contact, Company])
def test_every_reverse_relation_has_a_plan(model):
    plan = relation_plan(model)  # raises for a unique relation without a fold rule
    planned = {(rel.related_model, rel.field.name) for rels in plan.values() for rel in rels}
    every = {
        (field.related_model, field.remote_field.name)
        for field in model._meta.get_fields(include_hidden=True)
        if field.auto_created and not field.concrete and not field.many_to_many
    }
    assert planned == every
    assert (OutboundEmail, model._meta.model_name) in planned  # a hidden relation (related_name="+") too
    for rel in plan["fold"]:
        assert (model, rel.related_model) in FOLDED


def _row_pointing_at(entity, model, related, field, target):
    """Create one row of `related` whose `field` points at `target` (the known models)."""
    other = factories.make_company(entity) if model is Contact else factories.make_contact(entity)
    if related is CompanyMembership:
        return (
            factories.make_membership(target, other) if model is Contact else factories.make_membership(other, target)
        )
    if related is Lead:
        return factories.make_lead(entity, **{field: target})
    if related is Activity:
        return factories.make_activity(entity, **{field: target})
    if related is MarketingListMember:
        return factories.make_list_member(factories.make_list(entity), target)
    if related is OutboundEmail:
        connection = OutboundEmailConnection.objects.create(
            entity=entity, channel="gmail", email_address=f"box-{target.pk.hex[:8]}@example.com"
        )
        return OutboundEmail.objects.create(
            entity=entity,
            channel="gmail",
            from_address=connection.email_address,
            subject="Hello",
            connection=connection,
            **{field: target},
        )
    raise AssertionError(
        f"{related.__name__}.{field} points at {model.__name__}: teach this test (and check crm.services.merge) "
        "how the merge moves it"
    )


@pytest.mark.parametrize("model", [Contact, Company])
def test_merge_moves_every_reverse_relation(api, entity, model):
    make = factories.make_contact if model is Contact else factories.make_company
    survivor, merged = make(entity), make(entity)
    plan = relation_plan(model)
    rows = [
        (rel, _row_pointing_at(entity, model, rel.related_model, rel.field.name, merged))
        for rel in plan["move"] + plan["fold"]
    ]
    assert rows, "no relation walked"
    path = "contacts" if model is Contact else "companies"
    response = api.post(f"/{path}/{survivor.pk}/merge", {"mergeId": str(merged.pk)})
    assert response.status_code == 200, response.content
    for rel, row in rows:
        row.refresh_from_db()
        assert getattr(row, rel.field.attname) == survivor.pk, rel
    moved = response.json()["moved"]
    assert set(MOVED_KEYS.values()) <= set(moved)
    for rel, _ in rows:
        key = MOVED_KEYS.get(rel.related_model)
        if key:
            assert moved[key] >= 1, key
    assert not model.objects.filter(pk=merged.pk).exists()


# --- contacts ----------------------------------------------------------------------------------------


def test_contact_merge_folds_memberships_and_keeps_one_primary(api, entity):
    acme, globex, initech = (factories.make_company(entity, name=n) for n in ("Acme", "Globex", "Initech"))
    survivor = factories.make_contact(entity, company=acme)  # primary at Acme
    merged = factories.make_contact(entity, company=globex)  # primary at Globex
    factories.make_membership(merged, acme, title="Buyer")  # clashes with the survivor's Acme membership
    factories.make_membership(merged, initech)
    body = api.post(f"/contacts/{survivor.pk}/merge", {"mergeId": str(merged.pk)}).json()
    assert body["moved"]["memberships"] == 3
    rows = CompanyMembership.objects.filter(contact=survivor)
    assert sorted(m.company.name for m in rows) == ["Acme", "Globex", "Initech"]
    assert [m.company.name for m in rows if m.is_primary] == ["Acme"]
    assert body["contact"]["companyId"] == str(acme.pk)


def test_contact_without_primary_takes_the_merged_primary(api, entity):
    acme, globex = factories.make_company(entity, name="Acme"), factories.make_company(entity, name="Globex")
    survivor = factories.make_contact(entity)
    factories.make_membership(survivor, acme, is_primary=False)
    merged = factories.make_contact(entity)
    factories.make_membership(merged, acme, is_primary=True)  # folds into the survivor's: now primary
    factories.make_membership(merged, globex, is_primary=False)
    body = api.post(f"/contacts/{survivor.pk}/merge", {"mergeId": str(merged.pk)}).json()
    assert body["contact"]["companyId"] == str(acme.pk)
    assert CompanyMembership.objects.filter(contact=survivor, is_primary=True).count() == 1


def test_contact_merge_folds_list_members_keeping_unsubscribes(api, entity):
    survivor, merged = factories.make_contact(entity, email="a@x.example"), factories.make_contact(entity)
    both, only_merged, opted_out = factories.make_list(entity), factories.make_list(entity), factories.make_list(entity)
    factories.make_list_member(both, survivor)
    factories.make_list_member(both, merged)
    factories.make_list_member(only_merged, merged)
    factories.make_list_member(opted_out, survivor)
    factories.make_list_member(opted_out, merged, status="unsubscribed")
    body = api.post(f"/contacts/{survivor.pk}/merge", {"mergeId": str(merged.pk)}).json()
    assert body["moved"]["listMembers"] == 3
    members = MarketingListMember.objects.filter(contact=survivor)
    assert sorted(str(m.marketing_list_id) for m in members) == sorted(
        str(x.pk) for x in (both, only_merged, opted_out)
    )
    kept = members.get(marketing_list=opted_out)
    assert kept.status == "unsubscribed" and kept.unsubscribed_at is not None
    assert MarketingListMember.objects.filter(contact__isnull=True).count() == 0


def test_contact_fields_fill_when_empty_or_named(api, entity):
    survivor = factories.make_contact(entity, first_name="Ada", last_name="", phone="111111", email=None)
    merged = factories.make_contact(
        entity, first_name="Augusta", last_name="Lovelace", phone="222222", email="ada@x.example", title="CEO"
    )
    body = api.post(
        f"/contacts/{survivor.pk}/merge", {"mergeId": str(merged.pk), "fieldsFrom": {"phone": "merged"}}
    ).json()["contact"]
    assert body["firstName"] == "Ada"  # kept: not empty, not named
    assert body["lastName"] == "Lovelace" and body["title"] == "CEO"  # empty: filled
    assert body["phone"] == "222222"  # named in fieldsFrom
    assert body["email"] == "ada@x.example"  # unique value moves once the merged record is gone
    survivor.refresh_from_db()
    assert survivor.email == "ada@x.example" and survivor.name_key == "ada lovelace"


def test_a_merged_contact_keeps_a_name_or_an_address(api, entity):
    survivor = factories.make_contact(entity, first_name="Ada", last_name="", email=None)
    merged = factories.make_contact(entity, first_name="", last_name="", email=None)
    Contact.objects.filter(pk=merged.pk).update(first_name="")
    body = {"mergeId": str(merged.pk), "fieldsFrom": {"firstName": "merged"}}
    assert_error(api.post(f"/contacts/{survivor.pk}/merge", body), 400)
    assert Contact.objects.filter(pk=merged.pk).exists()


def test_fields_from_refuses_unknown_fields(api, entity):
    survivor, merged = factories.make_contact(entity), factories.make_contact(entity)
    assert_error(
        api.post(f"/contacts/{survivor.pk}/merge", {"mergeId": str(merged.pk), "fieldsFrom": {"x": "merged"}}), 400
    )
    assert_error(
        api.post(f"/contacts/{survivor.pk}/merge", {"mergeId": str(merged.pk), "fieldsFrom": {"phone": "b"}}), 400
    )
    assert Contact.objects.filter(pk=merged.pk).exists()


def test_dry_run_writes_nothing(api, entity):
    acme = factories.make_company(entity)
    survivor, merged = factories.make_contact(entity, last_name=""), factories.make_contact(entity, company=acme)
    factories.make_lead(entity, contact=merged)
    factories.make_activity(entity, contact=merged)
    seq = last_seq(entity)
    response = api.post(f"/contacts/{survivor.pk}/merge", {"mergeId": str(merged.pk), "dryRun": True})
    assert response.status_code == 200
    body = response.json()
    assert body["dryRun"] is True
    assert body["moved"]["leads"] == 1 and body["moved"]["activities"] == 1 and body["moved"]["memberships"] == 1
    assert body["contact"]["lastName"] == merged.last_name
    assert Contact.objects.filter(pk=merged.pk).exists()
    assert Lead.objects.filter(contact=merged).count() == 1
    assert changes_since(entity, seq) == []
    survivor.refresh_from_db()
    assert survivor.last_name == ""


def test_self_merge_is_400_and_foreign_ids_404(api, other_api, entity, other_entity):
    mine, foreign = factories.make_contact(entity), factories.make_contact(other_entity)
    assert_error(api.post(f"/contacts/{mine.pk}/merge", {"mergeId": str(mine.pk)}), 400)
    assert_error(api.post(f"/contacts/{mine.pk}/merge", {"mergeId": str(foreign.pk)}), 404)
    assert_error(api.post(f"/contacts/{foreign.pk}/merge", {"mergeId": str(mine.pk)}), 404)
    assert_error(api.post(f"/contacts/{mine.pk}/merge", {"mergeId": "nope"}), 400)
    assert_error(api.post(f"/contacts/{mine.pk}/merge", {}), 400)
    assert_error(api.post(f"/contacts/{mine.pk}/merge", {"mergeId": str(mine.pk), "other": 1}), 400)
    company = factories.make_company(entity)
    assert_error(api.post(f"/companies/{company.pk}/merge", {"mergeId": str(mine.pk)}), 404)  # a contact's id
    assert Contact.objects.filter(pk=foreign.pk).exists()


def test_merge_needs_write_scope_and_any_member_may(make_api, entity):
    member = factories.make_member(entity)
    survivor, merged = factories.make_contact(entity), factories.make_contact(entity)
    reader = make_api(scopes=("read:crm",), user=member)
    assert_error(reader.post(f"/contacts/{survivor.pk}/merge", {"mergeId": str(merged.pk)}), 403)
    writer = make_api(scopes=("write:crm", "read:crm"), user=member)
    assert writer.post(f"/contacts/{survivor.pk}/merge", {"mergeId": str(merged.pk)}).status_code == 200


def test_merged_id_answers_404_with_merged_into_and_leaves_lists(api, entity):
    a, b, c = factories.make_contact(entity), factories.make_contact(entity), factories.make_contact(entity)
    assert api.post(f"/contacts/{a.pk}/merge", {"mergeId": str(b.pk)}).status_code == 200
    body = assert_error(api.get(f"/contacts/{b.pk}"), 404)
    assert body["mergedInto"] == str(a.pk)
    assert assert_error(api.patch(f"/contacts/{b.pk}", {"title": "x"}), 404)["mergedInto"] == str(a.pk)
    assert str(b.pk) not in {row["id"] for row in api.get("/contacts").json()["contacts"]}
    # Merged again: the old tombstone follows the data.
    assert api.post(f"/contacts/{c.pk}/merge", {"mergeId": str(a.pk)}).status_code == 200
    assert assert_error(api.get(f"/contacts/{b.pk}"), 404)["mergedInto"] == str(c.pk)
    assert "mergedInto" not in assert_error(api.get(f"/contacts/{factories.make_company(entity).pk}"), 404)


def test_change_feed_and_timeline(api, entity):
    acme = factories.make_company(entity)
    survivor, merged = (
        factories.make_contact(entity, title=""),
        factories.make_contact(entity, title="CTO", company=acme),
    )
    lead = factories.make_lead(entity, contact=merged, company=acme)
    seq = last_seq(entity)
    assert api.post(f"/contacts/{survivor.pk}/merge", {"mergeId": str(merged.pk)}).status_code == 200
    recorded = changes_since(entity, seq)
    types = [(c.type, c.object_id) for c in recorded]
    assert ("contact.updated", str(survivor.pk)) in types
    assert ("lead.updated", str(lead.pk)) in types
    assert ("company_membership.updated", str(CompanyMembership.objects.get(contact=survivor).pk)) in types
    assert types[-1] == ("contact.deleted", str(merged.pk))
    import json

    gone = recorded[-1]
    data = gone.data if isinstance(gone.data, dict) else json.loads(gone.data)
    assert data == {"id": str(merged.pk), "mergedInto": str(survivor.pk)}
    survivor_change = next(c for c in recorded if c.type == "contact.updated")
    previous = (
        survivor_change.previous if isinstance(survivor_change.previous, dict) else json.loads(survivor_change.previous)
    )
    assert previous["title"] == "" and previous["companyId"] is None
    event = LeadEvent.objects.get(lead=lead, kind="field_changed")
    assert event.data["changes"] == {"contactId": [str(merged.pk), str(survivor.pk)]}
    timeline = api.get(f"/leads/{lead.pk}/timeline").json()["timeline"]
    assert timeline[0]["kind"] == "field_changed"


def test_counters_and_dashboard_stay_exact(api, entity):
    survivor, merged = factories.make_contact(entity), factories.make_contact(entity)
    company_a, company_b = factories.make_company(entity), factories.make_company(entity)
    assert api.post(f"/contacts/{survivor.pk}/merge", {"mergeId": str(merged.pk)}).status_code == 200
    assert api.post(f"/companies/{company_a.pk}/merge", {"mergeId": str(company_b.pk)}).status_code == 200
    assert api.get("/contacts").json()["total"] == Contact.objects.for_entity(entity).count() == 1
    assert api.get("/companies").json()["total"] == Company.objects.for_entity(entity).count() == 1
    dashboard = api.get("/dashboard").json()
    assert dashboard["contacts"]["total"] == 1 and dashboard["companies"]["total"] == 1


# --- companies -----------------------------------------------------------------------------------------


def test_company_merge_folds_memberships_and_moves_primaries(api, entity):
    survivor = factories.make_company(entity, name="Acme", phone="")
    merged = factories.make_company(entity, name="ACME Inc", phone="0301234567", domain="acme.example")
    both = factories.make_contact(entity)
    factories.make_membership(both, survivor, is_primary=False)
    factories.make_membership(both, merged, is_primary=True)  # folds; the survivor's becomes primary
    only = factories.make_contact(entity, company=merged)
    lead = factories.make_lead(entity, company=merged)
    activity = factories.make_activity(entity, company=merged)
    body = api.post(f"/companies/{survivor.pk}/merge", {"mergeId": str(merged.pk)}).json()
    assert body["moved"]["memberships"] == 2 and body["moved"]["leads"] == 1 and body["moved"]["activities"] == 1
    assert body["company"]["phone"] == "0301234567" and body["company"]["domain"] == "acme.example"
    assert CompanyMembership.objects.get(contact=both).is_primary
    assert api.get(f"/contacts/{both.pk}").json()["contact"]["companyId"] == str(survivor.pk)
    assert api.get(f"/contacts/{only.pk}").json()["contact"]["companyId"] == str(survivor.pk)
    lead.refresh_from_db()
    activity.refresh_from_db()
    assert lead.company_id == survivor.pk and activity.company_id == survivor.pk
    assert assert_error(api.get(f"/companies/{merged.pk}"), 404)["mergedInto"] == str(survivor.pk)


def per_row(queries) -> int:
    """Statements that could grow with the rows moved: all of them but cached per-entity lookups
    (custom field definitions are read once and cached, so whether a request reads them depends on
    the cache, not on the merge)."""
    return sum(1 for query in queries if "crm_customfield" not in query["sql"])


def test_company_merge_query_count_is_bounded(api, entity):
    api.get("/companies")  # the key's first use of the minute writes last_used_at once

    def run(members: int) -> int:
        survivor, merged = factories.make_company(entity), factories.make_company(entity)
        for _ in range(members):
            factories.make_contact(entity, company=merged)
            factories.make_lead(entity, company=merged)
        with CaptureQueriesContext(connection) as queries:
            assert api.post(f"/companies/{survivor.pk}/merge", {"mergeId": str(merged.pk)}).status_code == 200
        return per_row(queries)

    assert run(8) == run(2)


def test_contact_merge_query_count_is_bounded(api, entity):
    api.get("/contacts")  # the key's first use of the minute writes last_used_at once

    def run(rows: int) -> int:
        survivor, merged = factories.make_contact(entity), factories.make_contact(entity)
        for _ in range(rows):
            factories.make_lead(entity, contact=merged)
            factories.make_activity(entity, contact=merged)
            factories.make_membership(merged, factories.make_company(entity))
        with CaptureQueriesContext(connection) as queries:
            assert api.post(f"/contacts/{survivor.pk}/merge", {"mergeId": str(merged.pk)}).status_code == 200
        return per_row(queries)

    assert run(8) == run(2)


def test_merge_refinds_the_survivors_pairs(api, entity):
    acme = api.post("/companies", {"name": "Acme"}).json()["company"]["id"]
    a = api.post("/contacts", {"firstName": "Ada", "phone": "0301234567"}).json()["contact"]["id"]
    b = api.post("/contacts", {"firstName": "Bob", "companyId": acme}).json()["contact"]["id"]
    c = api.post("/contacts", {"firstName": "Bob", "companyId": acme, "phone": "030 1234567"}).json()["contact"]["id"]
    assert {frozenset(p["ids"]) for p in api.get("/contacts/duplicates").json()["duplicates"]} == {
        frozenset({a, c}),
        frozenset({b, c}),
    }
    assert api.post(f"/contacts/{b}/merge", {"mergeId": c}).status_code == 200
    assert {frozenset(p["ids"]) for p in api.get("/contacts/duplicates").json()["duplicates"]} == {frozenset({a, b})}


def test_company_merge_pairs_the_namesakes_it_brings_together(api, entity):
    survivor = api.post("/companies", {"name": "Acme"}).json()["company"]["id"]
    merged = api.post("/companies", {"name": "Globex"}).json()["company"]["id"]

    def contact(first, company, **more):
        return api.post("/contacts", {"firstName": first, "lastName": "Doe", "companyId": company, **more}).json()[
            "contact"
        ]["id"]

    a, b = contact("Ann", survivor, phone="0301234567"), contact("Ann", merged, phone="030 1234567")
    c, d = contact("Cy", survivor), contact("Cy", merged)
    e, f = contact("Eve", survivor), contact("Eve", merged)
    assert api.post("/contacts/duplicates/dismiss", {"ids": [e, f]}).status_code == 200
    before = {frozenset(p["ids"]): p for p in api.get("/contacts/duplicates").json()["duplicates"]}
    assert before[frozenset({a, b})]["reasons"] == ["same_phone"]

    assert api.post(f"/companies/{survivor}/merge", {"mergeId": merged}).status_code == 200
    after = {frozenset(p["ids"]): p for p in api.get("/contacts/duplicates").json()["duplicates"]}
    assert after[frozenset({a, b})]["reasons"] == ["same_name_same_company", "same_phone"]
    assert after[frozenset({a, b})]["score"] == pytest.approx(1 - 0.4 * 0.15, abs=1e-4)
    assert after[frozenset({c, d})]["reasons"] == ["same_name_same_company"]
    assert frozenset({e, f}) not in after
    assert api.get("/contacts/duplicates").json()["total"] == 2


def test_a_large_company_merge_leaves_similar_names_to_the_refresh_tasks(
    api, entity, monkeypatch, settings, django_capture_on_commit_callbacks
):
    """Beyond SIMILAR_AT_COMPANY_LIMIT people the merge pairs equal names in its transaction and
    queues the refresh of the survivor's contacts, which then finds the similar names; dismissed
    pairs stay dismissed."""
    from crm.services import duplicates

    settings.CELERY_TASK_ALWAYS_EAGER = True
    survivor = api.post("/companies", {"name": "Acme"}).json()["company"]["id"]
    merged = api.post("/companies", {"name": "Globex"}).json()["company"]["id"]

    def contact(first, last, company):
        body = {"firstName": first, "lastName": last, "companyId": company}
        return api.post("/contacts", body).json()["contact"]["id"]

    a, b = contact("Maximilian", "Richardson", survivor), contact("Maximillian", "Richardson", merged)
    c, d = contact("Cy", "Doe", survivor), contact("Cy", "Doe", merged)
    e, f = contact("Johanna", "Smithson", survivor), contact("Johana", "Smithson", merged)
    assert api.post("/contacts/duplicates/dismiss", {"ids": [e, f]}).status_code == 200
    monkeypatch.setattr(duplicates, "SIMILAR_AT_COMPANY_LIMIT", 4)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        assert api.post(f"/companies/{survivor}/merge", {"mergeId": merged}).status_code == 200
    after = {frozenset(p["ids"]): p["reasons"] for p in api.get("/contacts/duplicates").json()["duplicates"]}
    assert after == {frozenset({c, d}): ["same_name_same_company"]}

    for callback in queued:
        callback()  # on commit: the refresh tasks (eager here)
    after = {frozenset(p["ids"]): p["reasons"] for p in api.get("/contacts/duplicates").json()["duplicates"]}
    assert after == {frozenset({c, d}): ["same_name_same_company"], frozenset({a, b}): ["similar_name"]}


def test_a_status_taken_from_the_merged_company_keeps_archived_at_in_step(api, entity):
    survivor = factories.make_company(entity, name="Acme")
    merged = factories.make_company(entity, name="Acme Old")
    assert api.patch(f"/companies/{merged.pk}", {"status": "inactive"}).status_code == 200
    body = api.post(
        f"/companies/{survivor.pk}/merge", {"mergeId": str(merged.pk), "fieldsFrom": {"status": "merged"}}
    ).json()["company"]
    assert body["status"] == "inactive" and body["archivedAt"] is not None


def test_custom_fields_through_the_api(api, entity):
    for key, kind in (("tier", "text"), ("score", "number")):
        response = api.post("/custom-fields", {"objectType": "contact", "key": key, "label": key.title(), "type": kind})
        assert response.status_code == 201, response.content
    survivor = api.post("/contacts", {"firstName": "Ada", "customFields": {"tier": "gold"}}).json()["contact"]["id"]
    merged = api.post("/contacts", {"firstName": "Ada", "customFields": {"tier": "silver", "score": 5}}).json()[
        "contact"
    ]["id"]
    dry = api.post(f"/contacts/{survivor}/merge", {"mergeId": merged, "dryRun": True}).json()["contact"]
    assert dry["customFields"] == {"tier": "gold", "score": "5"}  # empty filled, the rest kept
    body = {"mergeId": merged, "fieldsFrom": {"customFields": {"tier": "merged"}}}
    response = api.post(f"/contacts/{survivor}/merge", body)
    assert response.status_code == 200, response.content
    assert response.json()["contact"]["customFields"] == {"tier": "silver", "score": "5"}
    assert api.get(f"/contacts/{survivor}").json()["contact"]["customFields"] == {"tier": "silver", "score": "5"}
    other = api.post("/contacts", {"firstName": "Bo"}).json()["contact"]["id"]
    bad = {"mergeId": other, "fieldsFrom": {"customFields": {"tier": "both"}}}
    assert_error(api.post(f"/contacts/{survivor}/merge", bad), 400)
