"""`/api/crm/pipeline-stages`: defaults, lead counts, create, reorder, patch, delete."""

from __future__ import annotations

import random
import threading
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from crm.choices import LeadEventKind
from crm.models import Lead, LeadEvent, PipelineStage
from tests import factories
from tests.helpers import assert_error

STAGES = "/pipeline-stages"

DEFAULTS = [
    # name, kind, probability, system key, colour
    ("New", "open", 10, "new", "slate"),
    ("Contacted", "open", 20, "contacted", "blue"),
    ("Qualified", "open", 40, "qualified", "indigo"),
    ("Proposal", "open", 60, "proposal", "violet"),
    ("Negotiation", "open", 80, "negotiation", "amber"),
    ("Won", "won", 100, "won", "green"),
    ("Lost", "lost", 0, "lost", "red"),
]


def stage_list(api) -> list[dict]:
    response = api.get(STAGES)
    assert response.status_code == 200, response.content
    return response.json()["stages"]


def by_name(api) -> dict[str, dict]:
    return {stage["name"]: stage for stage in stage_list(api)}


def create_stage(api, **body) -> dict:
    response = api.post(STAGES, body)
    assert response.status_code == 201, response.content
    return response.json()["stage"]


def assert_dense(entity) -> None:
    orders = list(PipelineStage.objects.for_entity(entity).order_by("sort_order").values_list("sort_order", flat=True))
    assert orders == list(range(len(orders)))


# --- list and defaults ------------------------------------------------------------------------


def test_brand_new_entity_has_the_seven_default_stages(make_api):
    entity = factories.make_entity(name="Fresh Co")
    api = make_api(entity=entity, user=factories.make_member(entity))
    stages = stage_list(api)
    assert [(s["name"], s["kind"], s["defaultProbabilityPct"], s["systemKey"], s["colorKey"]) for s in stages] == [
        tuple(row) for row in DEFAULTS
    ]
    assert [s["sortOrder"] for s in stages] == list(range(7))
    assert all(s["leadCount"] == 0 for s in stages)
    assert set(stages[0]) == {
        "id",
        "name",
        "kind",
        "sortOrder",
        "defaultProbabilityPct",
        "colorKey",
        "systemKey",
        "leadCount",
    }


def test_lead_count_counts_each_stage_leads_and_nothing_of_other_entities(api, entity, other_entity):
    new, won = factories.stage(entity, "new"), factories.stage(entity, "won")
    for _ in range(3):
        factories.make_lead(entity, new)
    factories.make_lead(entity, won)
    for _ in range(5):
        factories.make_lead(other_entity, "new")
    counts = {s["name"]: s["leadCount"] for s in stage_list(api)}
    assert counts == {"New": 3, "Contacted": 0, "Qualified": 0, "Proposal": 0, "Negotiation": 0, "Won": 1, "Lost": 0}


def test_lead_counts_come_from_the_maintained_figures_in_one_query(api, entity):
    for key in ("new", "contacted", "won"):
        factories.make_lead(entity, key)
    api.get(STAGES)  # first use writes lastUsedAt
    with CaptureQueriesContext(connection) as queries:
        response = api.get(STAGES)
    assert response.status_code == 200
    stage_queries = [q["sql"] for q in queries.captured_queries if "crm_pipelinestage" in q["sql"]]
    assert len(stage_queries) == 1
    assert "crm_pipelinefigure" in stage_queries[0]  # a few maintained rows, not every lead
    assert not [q for q in queries.captured_queries if 'FROM "crm_lead"' in q["sql"]]
    counts = {stage["systemKey"]: stage["leadCount"] for stage in response.json()["stages"]}
    assert (counts["new"], counts["contacted"], counts["won"], counts["lost"]) == (1, 1, 1, 0)


# --- create -----------------------------------------------------------------------------------


def test_create_answers_201_and_goes_last_with_defaults(api):
    stage = create_stage(api, name="  Demo booked  ")
    assert stage["name"] == "Demo booked"
    assert stage["kind"] == "open"
    assert stage["defaultProbabilityPct"] == 0
    assert stage["colorKey"] == "slate"
    assert stage["systemKey"] is None
    assert stage["leadCount"] == 0
    assert stage["sortOrder"] == 7
    assert [s["name"] for s in stage_list(api)][-1] == "Demo booked"


@pytest.mark.parametrize(("kind", "probability"), [("won", 100), ("lost", 0), ("open", 0)])
def test_create_default_probability_follows_kind(api, kind, probability):
    assert create_stage(api, name=f"Extra {kind}", kind=kind)["defaultProbabilityPct"] == probability


def test_create_stores_given_probability_and_colour(api):
    stage = create_stage(api, name="Trial", kind="open", defaultProbabilityPct=35, colorKey="teal")
    assert (stage["defaultProbabilityPct"], stage["colorKey"]) == (35, "teal")


def test_create_with_existing_name_any_case_is_409_with_existing_id(api):
    existing = by_name(api)["Qualified"]
    body = assert_error(api.post(STAGES, {"name": "qUALIFIED"}), 409)
    assert body["existingId"] == existing["id"]


@pytest.mark.parametrize(("first", "second"), [("Kiosk", "\u212aiosk"), ("\u212aiosk", "kiosk")])
def test_name_equal_only_in_lower_case_is_409_not_500(api, first, second):
    # The Kelvin sign lowers to "k" (as the unique constraint compares) but does not upper to "K".
    existing = create_stage(api, name=first)
    body = assert_error(api.post(STAGES, {"name": second}), 409)
    assert body["existingId"] == existing["id"]


def test_rename_onto_a_name_equal_only_in_lower_case_is_409_not_500(api, entity):
    existing = create_stage(api, name="Kiosk")
    stage = factories.stage(entity, "new")
    body = assert_error(api.patch(f"{STAGES}/{stage.pk}", {"name": "\u212aiosk"}), 409)
    assert body["existingId"] == existing["id"]


def test_same_name_in_another_entity_is_fine(api, other_api):
    create_stage(other_api, name="Demo")
    create_stage(api, name="Demo")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "   "},
        {"name": None},
        {"name": "x" * 61},
        {"name": "Ok", "kind": "maybe"},
        {"name": "Ok", "colorKey": "black"},
        {"name": "Ok", "defaultProbabilityPct": 101},
        {"name": "Ok", "defaultProbabilityPct": -1},
        {"name": "Ok", "defaultProbabilityPct": "lots"},
    ],
)
def test_create_with_invalid_input_is_400(api, body):
    assert_error(api.post(STAGES, body), 400)


def test_create_accepts_sixty_characters(api):
    assert create_stage(api, name="x" * 60)["name"] == "x" * 60


# --- reorder ----------------------------------------------------------------------------------


def test_reorder_rewrites_every_sort_order_and_answers_the_new_order(api, entity):
    stages = stage_list(api)
    ids = [s["id"] for s in reversed(stages)]
    response = api.post(f"{STAGES}/reorder", {"stageIds": ids})
    assert response.status_code == 200, response.content
    body = response.json()
    assert [s["id"] for s in body["stages"]] == ids
    assert [s["sortOrder"] for s in body["stages"]] == list(range(7))
    assert [s["id"] for s in stage_list(api)] == ids
    assert_dense(entity)


def test_reorder_answers_lead_counts(api, entity):
    factories.make_lead(entity, "won")
    ids = [s["id"] for s in stage_list(api)]
    body = api.post(f"{STAGES}/reorder", {"stageIds": ids[::-1]}).json()
    assert body["stages"][1]["name"] == "Won" and body["stages"][1]["leadCount"] == 1


def test_reorder_includes_stages_added_later(api):
    extra = create_stage(api, name="Extra")
    ids = [s["id"] for s in stage_list(api)]
    ids.remove(extra["id"])
    response = api.post(f"{STAGES}/reorder", {"stageIds": [extra["id"], *ids]})
    assert response.status_code == 200
    assert stage_list(api)[0]["name"] == "Extra"


def test_reorder_rejects_partial_list(api):
    ids = [s["id"] for s in stage_list(api)]
    body = assert_error(api.post(f"{STAGES}/reorder", {"stageIds": ids[:-1]}), 400)
    assert "stageIds" in body["details"]
    assert ids[-1] in body["error"]


def test_reorder_rejects_empty_list(api):
    assert_error(api.post(f"{STAGES}/reorder", {"stageIds": []}), 400)


def test_reorder_rejects_duplicates(api):
    ids = [s["id"] for s in stage_list(api)]
    assert_error(api.post(f"{STAGES}/reorder", {"stageIds": [*ids, ids[0]]}), 400)
    assert_error(api.post(f"{STAGES}/reorder", {"stageIds": [ids[0], *ids[:-1]]}), 400)


def test_reorder_rejects_extra_unknown_id(api):
    ids = [s["id"] for s in stage_list(api)]
    assert_error(api.post(f"{STAGES}/reorder", {"stageIds": [*ids, str(uuid.uuid4())]}), 400)


def test_reorder_rejects_another_entitys_stage(api, other_entity):
    ids = [s["id"] for s in stage_list(api)]
    foreign = str(factories.stage(other_entity, "new").pk)
    assert_error(api.post(f"{STAGES}/reorder", {"stageIds": [*ids[:-1], foreign]}), 400)
    assert_error(api.post(f"{STAGES}/reorder", {"stageIds": [*ids, foreign]}), 400)


@pytest.mark.parametrize(
    "stage_ids", ["not-a-list", ["not-a-uuid"], [1, 2], None, {"a": 1}], ids=["string", "bad", "ints", "null", "obj"]
)
def test_reorder_rejects_malformed_ids(api, stage_ids):
    assert_error(api.post(f"{STAGES}/reorder", {"stageIds": stage_ids}), 400)


def test_reorder_without_stage_ids_is_400(api):
    assert_error(api.post(f"{STAGES}/reorder", {}), 400)


def test_failed_reorder_changes_nothing(api):
    before = [s["id"] for s in stage_list(api)]
    api.post(f"{STAGES}/reorder", {"stageIds": before[::-1][:-1]})
    assert [s["id"] for s in stage_list(api)] == before


@pytest.mark.django_db(transaction=True)
def test_concurrent_reorders_leave_no_duplicates_or_gaps(make_api, entity):
    ids = [str(pk) for pk in PipelineStage.objects.for_entity(entity).values_list("id", flat=True)]
    errors: list = []
    statuses: list[int] = []

    def worker(seed: int) -> None:
        api = make_api()  # each thread its own client (and database connection)
        rng = random.Random(seed)
        try:
            for _ in range(6):
                order = ids[:]
                rng.shuffle(order)
                statuses.append(api.post(f"{STAGES}/reorder", {"stageIds": order}).status_code)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive(), "a reorder thread is still running after 60 s"
    assert not errors
    assert statuses == [200] * 24
    assert_dense(entity)
    assert sorted(str(pk) for pk in PipelineStage.objects.for_entity(entity).values_list("id", flat=True)) == sorted(
        ids
    )


# --- retrieve and patch -----------------------------------------------------------------------


def test_get_one_stage_answers_it_wrapped(api, entity):
    won = factories.stage(entity, "won")
    factories.make_lead(entity, won)
    body = api.get(f"{STAGES}/{won.pk}").json()
    assert body["stage"]["name"] == "Won" and body["stage"]["leadCount"] == 1


def test_patch_renames_recolours_and_changes_probability(api, entity):
    stage = factories.stage(entity, "qualified")
    factories.make_lead(entity, stage)
    response = api.patch(f"{STAGES}/{stage.pk}", {"name": "Discovery", "colorKey": "cyan", "defaultProbabilityPct": 45})
    assert response.status_code == 200, response.content
    body = response.json()["stage"]
    assert (body["name"], body["colorKey"], body["defaultProbabilityPct"]) == ("Discovery", "cyan", 45)
    assert body["systemKey"] == "qualified"
    assert body["leadCount"] == 1
    assert body["sortOrder"] == 2


def test_patch_to_another_stage_name_is_409(api, entity):
    stage = factories.stage(entity, "new")
    body = assert_error(api.patch(f"{STAGES}/{stage.pk}", {"name": "won"}), 409)
    assert body["existingId"] == str(factories.stage(entity, "won").pk)


def test_patch_may_change_the_case_of_its_own_name(api, entity):
    stage = factories.stage(entity, "new")
    assert api.patch(f"{STAGES}/{stage.pk}", {"name": "NEW"}).json()["stage"]["name"] == "NEW"


def test_patch_kind_of_a_system_stage_is_400(api, entity):
    stage = factories.stage(entity, "proposal")
    body = assert_error(api.patch(f"{STAGES}/{stage.pk}", {"kind": "won"}), 400)
    assert "kind" in body["details"]
    stage.refresh_from_db()
    assert stage.kind == "open"


def test_patch_same_kind_of_a_system_stage_is_fine(api, entity):
    stage = factories.stage(entity, "won")
    assert api.patch(f"{STAGES}/{stage.pk}", {"kind": "won", "name": "Closed won"}).status_code == 200


def test_patch_kind_of_a_custom_stage_moves_its_leads_status_along(api, entity):
    custom = create_stage(api, name="Verbal yes")
    lead = factories.make_lead(entity, PipelineStage.objects.get(pk=custom["id"]))
    body = api.patch(f"{STAGES}/{custom['id']}", {"kind": "won"}).json()["stage"]
    assert body["kind"] == "won"
    lead.refresh_from_db()
    assert lead.closed_at is not None
    api.patch(f"{STAGES}/{custom['id']}", {"kind": "open"})
    lead.refresh_from_db()
    assert lead.closed_at is None


def test_patch_kind_that_leaves_no_stage_of_a_kind_is_409(api, entity):
    custom = create_stage(api, name="Closed won", kind="won")
    won = factories.stage(entity, "won")
    assert api.delete(f"{STAGES}/{won.pk}").status_code == 200
    assert_error(api.patch(f"{STAGES}/{custom['id']}", {"kind": "open"}), 409)


@pytest.mark.parametrize(
    "body",
    [
        {"name": ""},
        {"name": "x" * 61},
        {"kind": "nope"},
        {"colorKey": "plaid"},
        {"defaultProbabilityPct": 200},
    ],
)
def test_patch_with_invalid_input_is_400(api, entity, body):
    assert_error(api.patch(f"{STAGES}/{factories.stage(entity, 'new').pk}", body), 400)


# --- delete -----------------------------------------------------------------------------------


def test_delete_an_empty_stage_closes_up_the_orders(api, entity):
    stage = factories.stage(entity, "contacted")
    response = api.delete(f"{STAGES}/{stage.pk}")
    assert response.status_code == 200, response.content
    assert response.json() == {"ok": True, "movedLeadCount": 0}
    stages = stage_list(api)
    assert [s["name"] for s in stages] == ["New", "Qualified", "Proposal", "Negotiation", "Won", "Lost"]
    assert [s["sortOrder"] for s in stages] == list(range(6))
    assert_dense(entity)


def test_delete_without_a_body_or_content_type_works(api, entity):
    stage = factories.stage(entity, "proposal")
    response = api.client.delete(
        f"/api/crm/pipeline-stages/{stage.pk}?entityId={entity.pk}", headers={"Authorization": f"Bearer {api.secret}"}
    )
    assert response.status_code == 200, response.content


def test_delete_with_leads_and_no_target_is_409(api, entity):
    stage = factories.stage(entity, "qualified")
    lead = factories.make_lead(entity, stage)
    assert_error(api.delete(f"{STAGES}/{stage.pk}"), 409)
    assert_error(api.delete(f"{STAGES}/{stage.pk}", {"moveLeadsToStageId": None}), 409)
    lead.refresh_from_db()
    assert lead.stage_id == stage.pk


def test_delete_moving_leads_to_itself_is_400(api, entity):
    stage = factories.stage(entity, "qualified")
    factories.make_lead(entity, stage)
    body = assert_error(api.delete(f"{STAGES}/{stage.pk}", {"moveLeadsToStageId": str(stage.pk)}), 400)
    assert "moveLeadsToStageId" in body["details"]


@pytest.mark.parametrize("target", ["unknown", "foreign", "malformed", "number"])
def test_delete_with_a_bad_target_is_400(api, entity, other_entity, target):
    stage = factories.stage(entity, "qualified")
    factories.make_lead(entity, stage)
    value = {
        "unknown": str(uuid.uuid4()),
        "foreign": str(factories.stage(other_entity, "new").pk),
        "malformed": "stage-7",
        "number": 7,
    }[target]
    body = assert_error(api.delete(f"{STAGES}/{stage.pk}", {"moveLeadsToStageId": value}), 400)
    assert "moveLeadsToStageId" in body["details"]
    assert PipelineStage.objects.filter(pk=stage.pk).exists()


@pytest.mark.parametrize("key", ["won", "lost"])
def test_deleting_the_last_stage_of_a_kind_is_409(api, entity, key):
    stage = factories.stage(entity, key)
    assert_error(api.delete(f"{STAGES}/{stage.pk}"), 409)
    assert PipelineStage.objects.filter(pk=stage.pk).exists()


def test_deleting_the_last_open_stage_is_409(api, entity):
    open_stages = list(PipelineStage.objects.for_entity(entity).filter(kind="open").order_by("sort_order"))
    for stage in open_stages[:-1]:
        assert api.delete(f"{STAGES}/{stage.pk}").status_code == 200
    assert_error(api.delete(f"{STAGES}/{open_stages[-1].pk}"), 409)


def test_deleting_the_last_of_a_kind_is_409_even_with_a_target(api, entity):
    won = factories.stage(entity, "won")
    factories.make_lead(entity, won)
    target = factories.stage(entity, "new")
    assert_error(api.delete(f"{STAGES}/{won.pk}", {"moveLeadsToStageId": str(target.pk)}), 409)
    assert Lead.objects.filter(stage=won).count() == 1


def test_delete_moves_leads_records_events_and_closes_up(api, entity):
    source = factories.stage(entity, "negotiation")
    target = factories.stage(entity, "won")
    leads = [factories.make_lead(entity, source, title=f"Deal {i}", probability_pct=80) for i in range(3)]
    untouched = factories.make_lead(entity, "new")
    response = api.delete(f"{STAGES}/{source.pk}", {"moveLeadsToStageId": str(target.pk)})
    assert response.status_code == 200, response.content
    assert response.json() == {"ok": True, "movedLeadCount": 3}
    assert not PipelineStage.objects.filter(pk=source.pk).exists()
    for lead in leads:
        lead.refresh_from_db()
        assert lead.stage_id == target.pk
        assert lead.probability_pct == 100
        assert lead.closed_at is not None
        assert lead.stage_changed_at is not None
    events = LeadEvent.objects.filter(lead__in=leads, kind=LeadEventKind.STAGE_CHANGED)
    assert events.count() == 3
    for event in events:
        assert event.data == {
            "fromStageId": str(source.pk),
            "fromStageName": "Negotiation",
            "toStageId": str(target.pk),
            "toStageName": "Won",
        }
        assert event.actor_type == "apiKey" and event.actor_id == api.api_key.pk
    assert not LeadEvent.objects.filter(lead=untouched).exists()
    counts = {s["name"]: s["leadCount"] for s in stage_list(api)}
    assert counts["Won"] == 3 and "Negotiation" not in counts
    assert_dense(entity)


def test_delete_moving_leads_from_lost_to_open_reopens_them(api, entity):
    extra_lost = create_stage(api, name="No budget", kind="lost")
    source = PipelineStage.objects.get(pk=extra_lost["id"])
    lead = factories.make_lead(entity, source, lost_reason="Too expensive", probability_pct=0)
    Lead.objects.filter(pk=lead.pk).update(closed_at="2024-01-01T00:00:00Z")
    target = factories.stage(entity, "qualified")
    assert api.delete(f"{STAGES}/{source.pk}", {"moveLeadsToStageId": str(target.pk)}).json()["movedLeadCount"] == 1
    lead.refresh_from_db()
    assert (lead.stage_id, lead.closed_at, lead.lost_reason, lead.probability_pct) == (target.pk, None, "", 40)


def test_delete_a_system_stage_that_is_not_the_last_of_its_kind(api, entity):
    assert api.delete(f"{STAGES}/{factories.stage(entity, 'new').pk}").status_code == 200
    assert stage_list(api)[0]["name"] == "Contacted"


def test_new_leads_go_to_the_first_open_stage_after_reorders_and_deletes(api, entity):
    ids = [s["id"] for s in stage_list(api)]
    qualified = str(factories.stage(entity, "qualified").pk)
    ids.remove(qualified)
    api.post(f"{STAGES}/reorder", {"stageIds": [ids[-1], qualified, *ids[:-1]]})  # Lost, Qualified, ...
    lead = api.post("/leads", {"title": "Fresh"}).json()["lead"]
    assert lead["stage"]["name"] == "Qualified"


@pytest.mark.django_db(transaction=True)
def test_deleting_a_stage_while_a_lead_moves_into_it_moves_that_lead_too(entity):
    """A move that holds its target stage makes a concurrent deletion of that stage wait for it, then
    find and move the lead, instead of a foreign key error at commit."""
    from django.db import transaction

    from crm.services.actors import Actor
    from crm.services.leads import lead_move_stage
    from crm.services.pipeline import stage_delete

    source, doomed, target = (factories.stage(entity, key) for key in ("new", "proposal", "negotiation"))
    lead = factories.make_lead(entity, source)
    moved_in, finish_move = threading.Event(), threading.Event()
    outcome: dict = {}

    def mover() -> None:
        try:
            with transaction.atomic():
                lead_move_stage(lead=Lead.objects.get(pk=lead.pk), stage=doomed, actor=Actor.system())
                moved_in.set()
                finish_move.wait(5)
        except Exception as exc:  # pragma: no cover - reported below
            outcome["mover"] = exc
            moved_in.set()
        finally:
            connection.close()

    def deleter() -> None:
        try:
            with transaction.atomic():
                outcome["moved"] = stage_delete(
                    stage=PipelineStage.objects.get(pk=doomed.pk), move_leads_to=target, actor=Actor.system()
                )
        except Exception as exc:  # pragma: no cover - reported below
            outcome["deleter"] = exc
        finally:
            connection.close()

    first = threading.Thread(target=mover)
    first.start()
    assert moved_in.wait(5)
    second = threading.Thread(target=deleter)
    second.start()
    second.join(0.5)
    assert second.is_alive()  # waiting for the move to commit
    finish_move.set()
    first.join(5)
    second.join(5)
    assert not first.is_alive() and not second.is_alive(), "the mover or the deleter is stuck"
    assert "mover" not in outcome and "deleter" not in outcome, outcome
    assert outcome["moved"] == 1
    lead.refresh_from_db()
    assert lead.stage_id == target.pk
    kinds = list(
        LeadEvent.objects.filter(lead=lead).order_by("occurred_at").values_list("data__toStageName", flat=True)
    )
    assert kinds == ["Proposal", "Negotiation"]
    assert_dense(entity)
