"""CSV import over the API: mapping, matching, dry runs, bad rows, the error file, counters.

The imports run in-process here (eager Celery, as in the demo) once the upload's transaction
commits; `test_import_worker.py` runs them on a real worker process and kills it.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from axiomatic.counters import counter_value
from axiomatic.models import Change
from crm.models import Company, CompanyMembership, Contact, Import, ImportRowError, Lead, LeadEvent
from crm.services.imports import import_claim, import_kick
from tests import factories
from tests.crm.bulk_helpers import csv_text, read_csv, run_import, upload
from tests.helpers import assert_error

pytestmark = pytest.mark.django_db


@pytest.fixture
def imported(api, django_capture_on_commit_callbacks):
    """`imported(rows_or_text, **form)` → the finished import (runs it in-process)."""

    def go(content, **fields):
        text = csv_text(content) if isinstance(content, list) else content
        return run_import(api, django_capture_on_commit_callbacks, text, **fields)

    return go


def _changes(entity, kind: str) -> int:
    return Change.objects.filter(entity_id=entity.pk, type=kind).count()


# --- mapping -----------------------------------------------------------------------------------------


def test_contacts_import_with_guessed_mapping_creates_and_counts(api, imported, entity):
    job = imported(
        [
            ["First Name", "last_name", "E-mail", "Job Title", "PHONE", "Favourite colour"],
            ["Ada", "Lovelace", "ADA@example.com", "Countess", "+44 1", "green"],
            ["Alan", "Turing", "alan@example.com", "", "", "blue"],
        ],
        objectType="contact",
    )
    assert job["status"] == "succeeded", job
    assert (job["totalRows"], job["processedRows"], job["created"], job["failed"]) == (2, 2, 2, 0)
    assert job["startedAt"] and job["finishedAt"] and job["dryRun"] is False
    ada = Contact.objects.get(entity=entity, email="ada@example.com")
    assert (ada.first_name, ada.last_name, ada.title, ada.phone) == ("Ada", "Lovelace", "Countess", "+44 1")
    listed = api.get("/imports").json()
    assert listed["imports"][0]["id"] == job["id"] and listed["total"] == 1


def test_an_explicit_mapping_overrides_the_guess_and_null_ignores_a_column(imported, entity):
    job = imported(
        [["Surname", "Given", "email", "notes"], ["Hopper", "Grace", "grace@example.com", "ignore me"]],
        objectType="contact",
        mapping={"Surname": "lastName", "Given": "firstName", "notes": None},
    )
    assert job["created"] == 1, job
    grace = Contact.objects.get(entity=entity, email="grace@example.com")
    assert (grace.first_name, grace.last_name, grace.notes) == ("Grace", "Hopper", "")


@pytest.mark.parametrize(
    "mapping,message",
    [
        ({"name": "nickname"}, "not a field"),
        ({"name": "name", "domain": "name"}, "Several columns are mapped onto name"),
        ({"Nope": "name"}, "columns the file does not have"),
        ({"name": "createdAt"}, "not a field"),
    ],
)
def test_a_bad_mapping_is_refused_before_anything_is_queued(api, mapping, message):
    response = upload(api, csv_text([["name", "domain"], ["A", "a.example"]]), objectType="company", mapping=mapping)
    body = assert_error(response, 400)
    assert message in body["error"]
    assert not Import.objects.exists()


# --- each object type, match and onMatch -------------------------------------------------------------


def test_companies_match_on_domain_keeps_unmapped_and_empty_fields(imported, entity):
    acme = factories.make_company(entity, name="Acme", domain="acme.example", city="Paris", industry="Tools")
    job = imported([["name", "domain", "city"], ["Acme Corp", "ACME.example", ""]], objectType="company")
    assert (job["created"], job["updated"], job["unchanged"]) == (0, 1, 0), job
    acme.refresh_from_db()
    assert (acme.name, acme.city, acme.industry) == ("Acme Corp", "Paris", "Tools")


def test_clear_empty_clears_the_mapped_empty_cells_on_update(imported, entity):
    acme = factories.make_company(entity, name="Acme", domain="acme.example", city="Paris", industry="Tools")
    job = imported([["name", "domain", "city"], ["Acme", "acme.example", ""]], objectType="company", clearEmpty=True)
    assert job["updated"] == 1, job
    acme.refresh_from_db()
    assert (acme.city, acme.industry) == ("", "Tools")


def test_on_match_skip_leaves_matched_records_alone(imported, entity):
    factories.make_contact(entity, first_name="Ada", email="ada@example.com")
    job = imported(
        [["email", "firstName"], ["ada@example.com", "Changed"], ["new@example.com", "New"]],
        objectType="contact",
        onMatch="skip",
    )
    assert (job["created"], job["skipped"], job["updated"]) == (1, 1, 0), job
    assert Contact.objects.get(entity=entity, email="ada@example.com").first_name == "Ada"


def test_match_on_id_updates_and_an_unknown_id_is_a_row_error(imported, entity):
    ada = factories.make_contact(entity, first_name="Ada", email="ada@example.com")
    missing = "7f1f8a0e-0000-4000-8000-000000000000"
    job = imported(
        [["id", "firstName"], [str(ada.pk), "Augusta"], [missing, "Ghost"], ["not-a-uuid", "Bad"]],
        objectType="contact",
        matchOn="id",
    )
    assert (job["updated"], job["failed"], job["created"]) == (1, 2, 0), job
    ada.refresh_from_db()
    assert ada.first_name == "Augusta"
    errors = {e["row"]: e for e in ImportRowError.objects.filter(job_id=job["id"]).values("row", "column", "message")}
    assert errors[2]["column"] == "id" and missing in errors[2]["message"]
    assert errors[3]["column"] == "id"


def test_match_on_none_always_creates(imported, entity):
    factories.make_company(entity, name="Acme")
    job = imported([["name"], ["Acme"], ["Acme"]], objectType="company", matchOn="none")
    assert job["created"] == 2
    assert Company.objects.filter(entity=entity, name="Acme").count() == 3


def test_leads_link_company_contact_and_stage_by_natural_keys(imported, entity, user):
    acme = factories.make_company(entity, name="Acme", domain="acme.example")
    ada = factories.make_contact(entity, first_name="Ada", email="ada@example.com")
    job = imported(
        [
            ["Title", "Company Domain", "Contact Email", "Stage", "Value", "Probability Pct", "Owner User Id"],
            ["Big deal", "acme.example", "ADA@example.com", "won", "1200.50", "", str(user.pk)],
            ["Small deal", "", "", "Qualified", "10", "55", ""],
        ],
        objectType="lead",
    )
    assert (job["created"], job["failed"]) == (2, 0), job
    big = Lead.objects.get(entity=entity, title="Big deal")
    assert (big.company_id, big.contact_id, big.stage.system_key) == (acme.pk, ada.pk, "won")
    assert big.value == Decimal("1200.50") and big.closed_at is not None and big.owner_id == user.pk
    small = Lead.objects.get(entity=entity, title="Small deal")
    assert (small.stage.name, small.probability_pct, small.currency) == ("Qualified", 55, entity.default_currency)
    assert LeadEvent.objects.filter(lead=big, kind="lead_created").count() == 1


def test_contacts_link_companies_and_create_them_when_asked(imported, entity):
    acme = factories.make_company(entity, name="Acme", domain="acme.example")
    rows = [
        ["email", "company domain", "company name"],
        ["a@x.example", "acme.example", ""],
        ["b@x.example", "new.example", "New Co"],
        ["c@x.example", "", "Named Only"],
        ["d@x.example", "new.example", ""],
    ]
    refused = imported(rows, objectType="contact")
    assert (refused["created"], refused["failed"]) == (1, 3), refused
    job = imported(rows, objectType="contact", createCompanies=True)
    assert (job["created"], job["unchanged"], job["failed"]) == (3, 1, 0), job
    new = Company.objects.get(entity=entity, domain="new.example")
    assert new.name == "New Co"
    assert Company.objects.filter(entity=entity, name="Named Only").count() == 1
    named = Company.objects.get(entity=entity, name="Named Only")
    primary = dict(CompanyMembership.objects.filter(is_primary=True).values_list("contact__email", "company_id"))
    assert primary == {"a@x.example": acme.pk, "b@x.example": new.pk, "c@x.example": named.pk, "d@x.example": new.pk}
    assert _changes(entity, "company_membership.created") == 4 and _changes(entity, "company.created") == 2


def test_duplicate_keys_inside_the_file_update_what_the_earlier_row_wrote(imported, entity):
    job = imported(
        [["email", "firstName", "lastName"], ["ada@example.com", "Ada", ""], ["ADA@example.com", "", "Lovelace"]],
        objectType="contact",
    )
    assert (job["created"], job["updated"]) == (1, 1), job
    ada = Contact.objects.get(entity=entity, email="ada@example.com")
    assert (ada.first_name, ada.last_name) == ("Ada", "Lovelace")
    assert _changes(entity, "contact.created") == 1 and _changes(entity, "contact.updated") == 1


# --- dry run -----------------------------------------------------------------------------------------


def test_a_dry_run_counts_everything_and_writes_nothing(imported, entity):
    factories.make_contact(entity, first_name="Ada", email="ada@example.com")
    before = (Contact.objects.count(), Company.objects.count(), Change.objects.count(), LeadEvent.objects.count())
    job = imported(
        [
            ["email", "firstName", "companyName"],
            ["ada@example.com", "Augusta", ""],
            ["new@example.com", "New", "Fresh Co"],
            ["bad-email", "Bad", ""],
        ],
        objectType="contact",
        dryRun=True,
        createCompanies=True,
    )
    assert job["dryRun"] is True and job["status"] == "succeeded"
    assert (job["created"], job["updated"], job["failed"]) == (1, 1, 1), job
    after = (Contact.objects.count(), Company.objects.count(), Change.objects.count(), LeadEvent.objects.count())
    assert after == before
    assert Contact.objects.get(email="ada@example.com").first_name == "Ada"
    assert counter_value(entity.pk, "contact") == 1


# --- bad rows ----------------------------------------------------------------------------------------


def test_bad_rows_are_counted_and_listed_while_good_rows_land(api, imported, entity):
    factories.make_contact(entity, first_name="Taken", email="taken@example.com")
    job = imported(
        [
            ["firstName", "lastName", "email", "ownerUserId"],
            ["Good", "One", "good1@example.com", ""],
            ["", "", "", ""],  # no identity
            ["Bad", "Mail", "not-an-email", ""],
            ["Ragged", "Row", "ragged@example.com", "", "extra"],
            ["Owner", "Stranger", "owner@example.com", "7f1f8a0e-0000-4000-8000-000000000000"],
            ["X" * 101, "Long", "long@example.com", ""],
            ["Good", "Two", "good2@example.com", ""],
        ],
        objectType="contact",
        matchOn="none",
    )
    # A blank line is no row; the "no identity" row is all empty cells but still counted.
    assert (job["totalRows"], job["created"], job["failed"]) == (7, 2, 5), job
    assert Contact.objects.filter(entity=entity, email__startswith="good").count() == 2
    listed = api.get(f"/imports/{job['id']}/errors").json()
    assert listed["total"] == 5
    by_row = {item["row"]: item for item in listed["errors"]}
    assert by_row[2]["message"] == "A contact needs at least one of firstName, lastName or email."
    assert (by_row[3]["column"], by_row[3]["message"]) == ("email", "Enter a valid email address.")
    assert by_row[4]["message"] == "The row has 5 cells; the header row has 4."
    assert by_row[5]["column"] == "ownerUserId" and "not a member" in by_row[5]["message"]
    assert by_row[6]["column"] == "firstName" and "100" in by_row[6]["message"]


def test_a_duplicate_email_against_another_record_is_the_apis_409_message(api, imported, entity):
    ada = factories.make_contact(entity, first_name="Ada", email="ada@example.com")
    other = factories.make_contact(entity, first_name="Other", email="other@example.com")
    job = imported([["id", "email"], [str(other.pk), "ada@example.com"]], objectType="contact", matchOn="id")
    assert job["failed"] == 1
    single = api.patch(f"/contacts/{other.pk}", {"email": "ada@example.com"})
    assert single.status_code == 409 and single.json()["existingId"] == str(ada.pk)
    (error,) = api.get(f"/imports/{job['id']}/errors").json()["errors"]
    assert error == {"row": 1, "column": "email", "message": single.json()["error"]}


def test_an_unknown_stage_is_a_row_error_with_the_apis_message(api, imported, entity):
    job = imported([["title", "stage"], ["Deal", "Nirvana"], ["Other", "new"]], objectType="lead")
    assert (job["created"], job["failed"]) == (1, 1)
    (error,) = api.get(f"/imports/{job['id']}/errors").json()["errors"]
    single = api.post("/leads", {"title": "Deal", "stage": "Nirvana"}).json()
    assert error["column"] == "stage" and error["message"] == single["details"]["stage"][0]


def test_a_file_that_is_not_utf8_is_refused_naming_the_line(api):
    content = b"name,domain\nGood,good.example\n" + "Caf\u00e9,bad.example\n".encode("latin-1")
    body = assert_error(upload(api, content, objectType="company"), 400)
    assert "UTF-8" in body["error"] and "line 3" in body["error"]
    assert not Import.objects.exists()


def test_a_bom_is_allowed(imported, entity):
    job = imported("\ufeffname,domain\nBom Co,bom.example\n", objectType="company")
    assert job["created"] == 1
    assert Company.objects.get(entity=entity, domain="bom.example").name == "Bom Co"


@pytest.mark.parametrize(
    "content,message",
    [("", "empty"), ("name,domain\n", "no data rows"), ("\n\n", "empty")],
)
def test_an_empty_file_is_refused(api, content, message):
    body = assert_error(upload(api, content, objectType="company"), 400)
    assert message in body["error"]


def test_limits_on_size_and_rows(api, settings):
    settings.IMPORT_MAX_BYTES = 2048
    big = "name\n" + "".join(f"Company {n}\n" for n in range(400))
    body = assert_error(upload(api, big, objectType="company"), 413)
    assert "larger than" in body["error"]
    settings.IMPORT_MAX_BYTES = 50 * 1024 * 1024
    settings.IMPORT_MAX_ROWS = 3
    body = assert_error(upload(api, "name\na\nb\nc\nd\n", objectType="company"), 400)
    assert "more than 3 data rows" in body["error"]
    assert not Import.objects.exists()


@pytest.mark.parametrize(
    "fields,field",
    [
        ({"objectType": "planet"}, "objectType"),
        ({"objectType": "lead", "matchOn": "email"}, "matchOn"),
        ({"objectType": "company", "onMatch": "merge"}, "onMatch"),
        ({"objectType": "company", "dryRun": "maybe"}, "dryRun"),
        ({"objectType": "company", "colour": "red"}, "colour"),
        ({"objectType": "company", "mapping": "{nope"}, "mapping"),
    ],
)
def test_bad_form_fields_are_400(api, fields, field):
    body = assert_error(upload(api, "name\nA\n", **fields), 400)
    assert field in body["error"]


def test_a_missing_file_is_400_and_json_is_415(api):
    query = f"entityId={api.entity.pk}"
    response = api.client.post(f"/api/crm/imports?{query}", data={"objectType": "company"}, headers=api._headers(None))
    assert "file" in assert_error(response, 400)["error"]
    assert_error(api.post("/imports", {"objectType": "company"}), 415)


# --- the error file ----------------------------------------------------------------------------------


def test_the_error_file_round_trips(api, imported, entity, django_capture_on_commit_callbacks):
    job = imported(
        [["name", "domain"], ["Good", "good.example"], ["", "nameless.example"], ["Bad domain", "not a domain"]],
        objectType="company",
    )
    assert job["failed"] == 2
    response = api.get(f"/imports/{job['id']}/errors", headers={"Accept": "text/csv"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = read_csv(response)
    assert rows[0] == ["name", "domain", "error"]
    assert rows[1][:2] == ["", "nameless.example"] and "name: This field is required." in rows[1][2]
    assert rows[2][:2] == ["Bad domain", "not a domain"] and "Enter a domain such as example.com." in rows[2][2]
    assert read_csv(api.get(f"/imports/{job['id']}/errors", {"format": "csv"})) == rows

    fixed = [["name", "domain", "error"], ["Nameless", "nameless.example", rows[1][2]], ["Bad", "bad.example", ""]]
    again = imported(fixed, objectType="company")
    assert (again["created"], again["failed"]) == (2, 0), again


def test_another_entitys_import_is_404(api, other_api, imported):
    job = imported([["name"], ["A"]], objectType="company", matchOn="none")
    assert_error(other_api.get(f"/imports/{job['id']}"), 404)
    assert_error(other_api.get(f"/imports/{job['id']}/errors"), 404)
    assert_error(other_api.post(f"/imports/{job['id']}/cancel"), 404)
    assert other_api.get("/imports").json()["total"] == 0


# --- queueing and cancelling -------------------------------------------------------------------------


def test_one_import_at_a_time_per_entity_others_wait_queued(api, entity, other_api, django_capture_on_commit_callbacks):
    first = upload(api, "name\nA\n", objectType="company", matchOn="none").json()["import"]
    second = upload(api, "name\nB\n", objectType="company", matchOn="none").json()["import"]
    elsewhere = upload(other_api, "name\nC\n", objectType="company", matchOn="none").json()["import"]
    token = import_claim(import_id=first["id"], token=None)
    assert token is not None
    assert import_claim(import_id=second["id"], token=None) is None  # waits behind the first
    assert import_claim(import_id=first["id"], token=None) is None  # held by a live run
    assert import_claim(import_id=elsewhere["id"], token=None) is not None  # other entities do not wait
    assert Import.objects.get(pk=second["id"]).status == "queued"
    # The first finishes: the kick runs the next one of the entity.
    Import.objects.filter(pk=first["id"]).update(status="succeeded", lease_token=None)
    with django_capture_on_commit_callbacks(execute=True):
        import_kick(entity_id=entity.pk)
    assert api.get(f"/imports/{second['id']}").json()["import"]["status"] == "succeeded"
    assert Company.objects.filter(entity=entity, name="B").exists()


def test_a_stalled_run_is_taken_over(api, settings):
    job = upload(api, "name\nA\n", objectType="company", matchOn="none").json()["import"]
    token = import_claim(import_id=job["id"], token=None)
    assert import_claim(import_id=job["id"], token=None) is None
    settings.IMPORT_STALE_SECONDS = 0
    Import.objects.filter(pk=job["id"]).update(heartbeat_at=Import.objects.get(pk=job["id"]).heartbeat_at)
    taken = import_claim(import_id=job["id"], token=None)
    assert taken is not None and taken != token


def test_cancel_a_queued_import_and_a_finished_one_is_409(api, imported):
    queued = upload(api, "name\nA\n", objectType="company", matchOn="none").json()["import"]
    response = api.post(f"/imports/{queued['id']}/cancel")
    assert response.status_code == 200 and response.json()["import"]["status"] == "cancelled"
    assert import_claim(import_id=queued["id"], token=None) is None
    done = imported([["name"], ["B"]], objectType="company", matchOn="none")
    assert_error(api.post(f"/imports/{done['id']}/cancel"), 409)


def test_cancelling_a_running_import_stops_before_the_next_chunk(api, entity, settings):
    from crm.bulk.importer import import_run

    settings.IMPORT_CHUNK_ROWS = 2
    settings.IMPORT_RUN_SECONDS = 0  # one chunk per run
    job = upload(api, "name\nA\nB\nC\nD\nE\n", objectType="company", matchOn="none").json()["import"]
    result = import_run(import_id=job["id"], token=None)
    assert result.state == "continue" and Import.objects.get(pk=job["id"]).processed_rows == 2
    api.post(f"/imports/{job['id']}/cancel")
    assert import_run(import_id=job["id"], token=result.token).state in ("finished", "idle")
    shown = api.get(f"/imports/{job['id']}").json()["import"]
    assert (shown["status"], shown["processedRows"], shown["created"]) == ("cancelled", 2, 2)
    assert Company.objects.filter(entity=entity).count() == 2


def test_processed_rows_advance_chunk_by_chunk(api, settings):
    from crm.bulk.importer import import_run

    settings.IMPORT_CHUNK_ROWS = 2
    settings.IMPORT_RUN_SECONDS = 0
    job = upload(api, "name\nA\nB\nC\n", objectType="company", matchOn="none").json()["import"]
    seen = []
    token = None
    while True:
        result = import_run(import_id=job["id"], token=token)
        shown = api.get(f"/imports/{job['id']}").json()["import"]
        seen.append((shown["status"], shown["processedRows"]))
        if result.state != "continue":
            break
        token = result.token
    assert seen == [("running", 2), ("running", 3), ("succeeded", 3)]


# --- change feed, counters, dashboard ----------------------------------------------------------------


def test_changes_are_recorded_for_created_and_updated_rows_and_none_for_unchanged(imported, entity):
    rows = [["email", "firstName"], ["a@example.com", "A"], ["b@example.com", "B"]]
    imported(rows, objectType="contact")
    assert (_changes(entity, "contact.created"), _changes(entity, "contact.updated")) == (2, 0)
    again = imported(rows, objectType="contact")
    assert again["unchanged"] == 2
    assert (_changes(entity, "contact.created"), _changes(entity, "contact.updated")) == (2, 0)
    imported([["email", "firstName"], ["a@example.com", "Changed"]], objectType="contact")
    (change,) = Change.objects.filter(entity_id=entity.pk, type="contact.updated")
    previous = json.loads(change.previous)
    assert json.loads(change.data)["firstName"] == "Changed"
    assert set(previous) == {"firstName", "fullName", "updatedAt"} and previous["firstName"] == "A"
    assert change.actor_type == "apiKey"


def test_counters_and_dashboard_are_exact_after_an_import(api, imported, entity):
    imported(
        [["title", "stage", "value"], ["A", "new", "100"], ["B", "won", "50"], ["C", "lost", ""], ["D", "new", "1"]],
        objectType="lead",
    )
    imported([["name", "domain"], ["X", "x.example"], ["Y", "y.example"]], objectType="company")
    assert api.get("/leads").json()["total"] == 4
    assert api.get("/companies").json()["total"] == 2
    dashboard = api.get("/dashboard").json()
    assert (dashboard["leads"]["open"], dashboard["leads"]["won"], dashboard["leads"]["lost"]) == (2, 1, 1)
    assert dashboard["companies"]["total"] == 2
    new = next(stage for stage in dashboard["pipeline"] if stage["name"] == "New")
    assert new["leadCount"] == 2 and new["value"] == [{"currency": entity.default_currency, "amount": "101.00"}]
    stages = {stage["name"]: stage["leadCount"] for stage in api.get("/pipeline-stages").json()["stages"]}
    assert (stages["New"], stages["Won"], stages["Lost"]) == (2, 1, 1)


def test_a_lead_update_by_id_moves_the_stage_with_its_rules(imported, entity):
    lead = factories.make_lead(entity, title="Deal")
    job = imported([["id", "stage", "lostReason"], [str(lead.pk), "lost", "Too dear"]], objectType="lead", matchOn="id")
    assert job["updated"] == 1, job
    lead.refresh_from_db()
    assert (lead.stage.system_key, lead.lost_reason, lead.probability_pct) == ("lost", "Too dear", 0)
    assert lead.closed_at is not None
    assert LeadEvent.objects.filter(lead=lead, kind="stage_changed").count() == 1
    assert _changes(entity, "lead.stage_changed") == 1 and _changes(entity, "lead.updated") == 0


# --- the operator command ----------------------------------------------------------------------------


def test_import_csv_command_prints_the_finished_import(entity, tmp_path):
    from io import StringIO

    from django.core.management import call_command
    from django.core.management.base import CommandError

    path = tmp_path / "companies.csv"
    path.write_text("Name,Domain\nAcme,acme.example\n,nameless.example\n")
    out = StringIO()
    call_command(
        "import_csv", str(path), "--entity", str(entity.pk), "--object-type", "company", "--no-progress", stdout=out
    )
    job = json.loads(out.getvalue())
    assert (job["status"], job["created"], job["failed"], job["totalRows"]) == ("succeeded", 1, 1, 2)
    assert Company.objects.filter(entity=entity, domain="acme.example").exists()
    dry = StringIO()
    call_command(
        "import_csv", str(path), "--entity", str(entity.pk), "--object-type", "company", "--dry-run",
        "--mapping", '{"Name": "name", "Domain": null}', "--match-on", "none", stdout=dry,
    )  # fmt: skip
    assert json.loads(dry.getvalue())["created"] == 1 and Company.objects.filter(entity=entity).count() == 1
    (tmp_path / "bad.csv").write_bytes(b"name\n\xff\n")
    with pytest.raises(CommandError, match="UTF-8"):
        call_command("import_csv", str(tmp_path / "bad.csv"), "--entity", str(entity.pk), "--object-type", "company")
    with pytest.raises(CommandError, match="No such file"):
        call_command("import_csv", str(tmp_path / "nope.csv"), "--entity", str(entity.pk), "--object-type", "lead")
