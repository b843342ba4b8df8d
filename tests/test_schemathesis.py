"""Schemathesis over every operation of `/api/schema`, against the live server.

The coverage, fuzzing and stateful phases (the stateful one follows the schema's OpenAPI links)
run with every check, under a time budget, and must end with no failure and no warning: the
schema promises exactly what the API does. One test in a module of its own, on a transactional
database, with a real API key of an entity that has some data; rate limits are lifted for it.

Some rules no schema can state, because they depend on what exists: an id in a path or a body must
name a row of the entity, `stageIds` of a reorder must list every stage once, a stage is named by
a name it has, `lostReason` needs a lost stage, the channel is the mailbox's, an Idempotency-Key
is fresh per request, a cursor is one the API gave. For cases generated as *valid*, a `before_call`
hook makes them so, as a client would (ids the fuzzer itself got from the API are kept as they
are); cases generated as invalid go out untouched.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import re
import threading
import time
import uuid
from collections import defaultdict

import pytest
import requests
import schemathesis
from click.testing import CliRunner
from schemathesis.cli import schemathesis as schemathesis_cli
from schemathesis.generation import GenerationMode

from crm.email.queue import MAX_RECIPIENTS
from marketing.services import MAX_IDS_PER_ADD
from tests import factories
from tests.crm.email.conftest import fake_provider, fake_provider_server, make_connection  # noqa: F401

pytestmark = [
    pytest.mark.django_db(transaction=True),
    # `SCHEMATHESIS=0` skips it (for a quick local run); CI always runs it.
    pytest.mark.skipif(os.environ.get("SCHEMATHESIS") == "0", reason="SCHEMATHESIS=0"),
]

TIME_BUDGET_SECONDS = 120  # for the three phases together; the whole test stays under 3 minutes
MAX_EXAMPLES = 8
STATEFUL_MAX_STEPS = 10
SEED = 20240601

# Names (in paths and bodies) whose values are ids of rows of one kind.
ID_KINDS = {
    "companyId": "company",
    "contactId": "contact",
    "leadId": "lead",
    "stageId": "stage",
    "moveLeadsToStageId": "stage",
    "membershipId": "membership",
    "listId": "list",
    "memberId": "member",
    "emailId": "email",
    "connectionId": "connection",
    "activityId": "activity",
    "ownerUserId": "user",
    "assigneeUserId": "user",
    "endpointId": "endpoint",
    "customFieldId": "customField",
    "importId": "import",
}
ID_LIST_KINDS = {"contactIds": "contact", "companyIds": "company", "leadIds": "lead"}
# Keys of the API's answers → the kind of row under them.
ANSWER_KINDS = {
    "company": "company",
    "companies": "company",
    "contact": "contact",
    "contacts": "contact",
    "lead": "lead",
    "leads": "lead",
    "stage": "stage",
    "stages": "stage",
    "membership": "membership",
    "memberships": "membership",
    "list": "list",
    "lists": "list",
    "member": "member",
    "members": "member",
    "email": "email",
    "connection": "connection",
    "connections": "connection",
    "activity": "activity",
    "activities": "activity",
    "tasks": "activity",
    "webhookEndpoint": "endpoint",
    "webhookEndpoints": "endpoint",
    "customField": "customField",
    "customFields": "customField",
    "import": "import",
    "imports": "import",
}
PARENT_OF = {"membership": "contactId", "member": "listId"}
# Where each seed row is read back (the stateful phase may delete one through an id its links
# carry, say a contact named in a membership's path): parents before the rows that hang off them.
SEED_PATHS = {
    "contact": "/api/crm/contacts/{contact}",
    "lead": "/api/crm/leads/{lead}",
    "list": "/api/marketing/lists/{list}",
    "stage": "/api/crm/pipeline-stages/{stage}",
    "endpoint": "/api/crm/webhook-endpoints/{endpoint}",
    "activity": "/api/crm/activities/{activity}",
    "membership": "/api/crm/contacts/{contact}/company-memberships/{membership}",
    "email": "/api/crm/outbound-email/{email}",
    "customField": "/api/crm/custom-fields/{customField}",
    "import": "/api/crm/imports/{import}",
}
# A small valid CSV for `POST /imports` (the file's content is what no schema can make valid).
IMPORT_CSV = b"name,domain\nImported One,imported-one.example\nImported Two,\n"
WEBHOOK_TYPES = ["*", "lead.*", "contact.created", "*.deleted"]


class TestData:
    """What exists in the entity, learnt from the seed and from every answer of the API."""

    __test__ = False

    def __init__(self, base_url: str, secret: str, entity_id: str):
        self.base_url = base_url
        self.entity_id = entity_id
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {secret}"
        self.known: dict[str, set[str]] = defaultdict(set)
        self.parent: dict[str, str] = {}  # membership → its contact, member → its list
        self.system_stages: set[str] = set()
        self.seed: dict[str, str] = {}
        self.lock = threading.Lock()

    # --- the API, for rows of our own ------------------------------------------------------------

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        response = self.http.request(
            method, f"{self.base_url}{path}", params={"entityId": self.entity_id}, json=body, timeout=30
        )
        assert response.status_code < 300, (method, path, response.status_code, response.text[:300])
        data = response.json()
        self.learn(path, data)
        return data

    def fresh(self, kind: str, parent: str | None = None) -> str:
        """A new row of `kind`, for a deletion (the seed rows must stay)."""
        tag = uuid.uuid4().hex[:8]
        if kind == "company":
            return self.call("POST", "/api/crm/companies", {"name": f"Fresh {tag}"})["company"]["id"]
        if kind == "contact":
            return self.call("POST", "/api/crm/contacts", {"firstName": f"Fresh {tag}"})["contact"]["id"]
        if kind == "lead":
            return self.call("POST", "/api/crm/leads", {"title": f"Fresh {tag}"})["lead"]["id"]
        if kind == "activity":
            body = {"type": "note", "subject": f"Fresh {tag}"}
            return self.call("POST", "/api/crm/activities", body)["activity"]["id"]
        if kind == "stage":
            return self.call("POST", "/api/crm/pipeline-stages", {"name": f"Fresh {tag}"})["stage"]["id"]
        if kind == "list":
            return self.call("POST", "/api/marketing/lists", {"name": f"Fresh {tag}"})["list"]["id"]
        if kind == "membership":
            body = {"companyId": self.fresh("company"), "isPrimary": False}
            return self.call("POST", f"/api/crm/contacts/{parent}/company-memberships", body)["membership"]["id"]
        if kind == "endpoint":
            body = {"url": f"https://hooks-{tag}.example.com/in"}
            return self.call("POST", "/api/crm/webhook-endpoints", body)["webhookEndpoint"]["id"]
        if kind == "customField":
            body = {"objectType": "company", "key": f"k{tag}", "label": f"Fresh {tag}", "type": "text"}
            return self.call("POST", "/api/crm/custom-fields", body)["customField"]["id"]
        if kind == "import":
            response = self.http.post(
                f"{self.base_url}/api/crm/imports",
                params={"entityId": self.entity_id},
                data={"objectType": "company", "dryRun": "true"},
                files={"file": ("fresh.csv", IMPORT_CSV, "text/csv")},
                timeout=30,
            )
            assert response.status_code == 202, response.text[:300]
            self.learn("/api/crm/imports", response.json())
            return response.json()["import"]["id"]
        if kind == "member":
            body = {"firstName": f"Fresh {tag}", "email": f"fresh-{tag}@example.com"}
            contact = self.call("POST", "/api/crm/contacts", body)["contact"]["id"]
            self.call("POST", "/api/crm/prospecting/add-to-marketing-list", {"listId": parent, "contactIds": [contact]})
            members = self.call("GET", f"/api/marketing/lists/{parent}/members")["members"]
            return next(member["id"] for member in members if member["contactId"] == contact)
        raise AssertionError(f"no fresh {kind}")

    def restore_seed(self, deleted: str) -> None:
        """Re-create every seed row that a DELETE took away, itself or with its parent, so later
        cases never name a row that is gone (the seed is what they fall back to)."""
        restored: set[str] = set()
        for kind, path in SEED_PATHS.items():
            response = self.http.get(
                f"{self.base_url}{path.format(**self.seed)}", params={"entityId": self.entity_id}, timeout=30
            )
            if response.status_code == 404:
                self.seed[kind] = self._recreate(kind)
                restored.add(kind)
        if deleted == self.seed["member"] or "list" in restored:  # members have no read of their own
            self.seed["member"] = self.fresh("member", self.seed["list"])
        with self.lock:
            for kind in ("membership", "member"):
                self.parent[self.seed[kind]] = self.seed[ID_KINDS[PARENT_OF[kind]]]

    def _recreate(self, kind: str) -> str:
        if kind == "membership":
            return self.fresh("membership", self.seed["contact"])
        if kind == "email":
            return self.seed_email()
        return self.fresh(kind)

    def seed_email(self) -> str:
        """An email sent on the seed lead through the seed mailbox (to an address of its own: the
        lead's contact may have none)."""
        body = {
            "leadId": self.seed["lead"],
            "connectionId": self.seed["connection"],
            "channel": "gmail",
            "subject": "Seed",
            "htmlBody": "<p>Hi</p>",
            "to": ["seed@customer.example"],
        }
        return self.call("POST", "/api/crm/outbound-email", body)["email"]["id"]

    def stages(self, kind: str | None = None) -> list[dict]:
        stages = self.call("GET", "/api/crm/pipeline-stages")["stages"]
        return [stage for stage in stages if kind is None or stage["kind"] == kind]

    # --- learning -------------------------------------------------------------------------------

    def learn(self, path: str, data) -> None:
        if not isinstance(data, dict):
            return
        parts = path.split("?")[0].strip("/").split("/")
        with self.lock:
            for key, value in data.items():
                kind = ANSWER_KINDS.get(key)
                for item in (value if isinstance(value, list) else [value]) if kind else ():
                    if not (isinstance(item, dict) and isinstance(item.get("id"), str)):
                        continue
                    self.known[kind].add(item["id"])
                    if kind == "stage" and item.get("systemKey"):
                        self.system_stages.add(item["id"])
                    parent_segment = {"membership": "contacts", "member": "lists"}.get(kind)
                    if parent_segment in parts:
                        self.parent[item["id"]] = parts[parts.index(parent_segment) + 1]

    def exists(self, kind: str, value) -> bool:
        with self.lock:
            return isinstance(value, str) and value in self.known[kind]

    # --- the hooks --------------------------------------------------------------------------------

    def before_call(self, case) -> None:
        if case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE:
            return
        if any(component.mode != GenerationMode.POSITIVE for component in case.meta.components.values()):
            return  # one part generated invalid: the case goes out as generated
        key = (case.headers or {}).get("Idempotency-Key")
        if isinstance(key, str) and re.fullmatch(r"[ -~]{1,255}", key):
            case.headers["Idempotency-Key"] = uuid.uuid4().hex  # a key is for one request
        if case.query:
            case.query.pop("cursor", None)  # cursors are the API's own (nextCursor)
            if "types" in case.query:
                case.query["types"] = random.choice(WEBHOOK_TYPES)  # event types of the catalogue
            for name in [name for name in case.query if name.startswith("cf")]:
                case.query.pop(name)  # `cf.<key>` names a field the entity defined (unknown keys: 400)
        if isinstance(case.body, dict):
            case.body = dict(case.body)  # generated cases may share one form (multipart): change a copy
        self._path(case)
        if isinstance(case.body, dict):
            self._body(case, case.body)

    def _path(self, case) -> None:
        params = case.path_parameters or {}
        names = list(params)
        for index, name in enumerate(names):
            kind = ID_KINDS[name]
            if kind in PARENT_OF and params[PARENT_OF[kind]] != self.seed[ID_KINDS[PARENT_OF[kind]]]:
                params[PARENT_OF[kind]] = self.seed[ID_KINDS[PARENT_OF[kind]]]  # nested rows: the seed's
                params[name] = self.seed[kind]
            if case.method.upper() == "DELETE" and index == len(names) - 1:
                params[name] = self.fresh(kind, params.get(PARENT_OF.get(kind, "")))  # never the seed's
            elif not self.exists(kind, params[name]):
                params[name] = self.seed[kind]
        body = case.body if isinstance(case.body, dict) else {}
        if params.get("stageId") in self.system_stages and "kind" in body:
            params["stageId"] = self.seed["stage"]  # a system stage keeps its kind (400)
        if "leadId" in params and body.get("leadId"):
            body["leadId"] = params["leadId"]  # an activity logged on a lead names that lead

    def _body(self, case, body: dict) -> None:
        operation = case.operation.label
        if isinstance(body.get("customFields"), dict):
            body["customFields"] = {}  # keys are the entity's own definitions (unknown keys: 400)
        if operation.endswith("/batch") and isinstance(body.get("items"), list):
            body["allOrNone"] = False  # one refused item would roll back (400) what is valid
            body.pop("matchOn", None)  # which keys an upsert matches on depends on the resource
            for item in body["items"]:
                if isinstance(item, dict) and isinstance(item.get("customFields"), dict):
                    item["customFields"] = {}
        if operation.startswith(("POST /api/crm/custom-fields", "PATCH /api/crm/custom-fields")):
            body.pop("required", None)  # a required field would refuse the fixture's own creations
            if body.get("type") not in (None, "select", "multiselect"):
                body.pop("options", None)  # only select and multiselect take options
            if (
                body.get("type") in ("select", "multiselect")
                and "options" in body
                or (operation.startswith("POST") and body.get("type") in ("select", "multiselect"))
            ):
                body["options"] = [{"value": "one", "label": "One"}, {"value": "two", "label": "Two"}]
            if body.get("type") not in ("text", "number", "email", "url"):
                body.pop("unique", None)  # only these can be unique
        if operation.startswith("PATCH /api/crm/custom-fields"):
            for name in ("key", "type", "objectType", "unique"):
                body.pop(name, None)  # fixed once the field exists (400)
            if isinstance(body.get("options"), list):
                body.pop("options")  # an option still held by a record cannot go (409 with the count)
        if operation == "POST /api/crm/imports":
            body["file"] = IMPORT_CSV
            body["objectType"] = "company"
            body.pop("mapping", None)  # names the CSV's own headers
            body["dryRun"] = "true"  # one import runs at a time; a dry run is over at once
        if "entityId" in body:
            body["entityId"] = self.entity_id
        for name, value in list(body.items()):
            kind = ID_KINDS.get(name)
            if kind and value is not None and not self.exists(kind, value):
                body[name] = self.seed[kind]
            list_kind = ID_LIST_KINDS.get(name)
            if list_kind and isinstance(value, list):
                body[name] = [item if self.exists(list_kind, item) else self.seed[list_kind] for item in value]
        if isinstance(body.get("stage"), str):
            body["stage"] = random.choice(self.stages())["name"]
        if body.get("lostReason"):  # only leads in a lost stage have one
            body.pop("stageId", None)
            body["stage"] = random.choice(self.stages("lost"))["name"]
        if "stageIds" in body:
            body["stageIds"] = random.sample([stage["id"] for stage in self.stages()], k=len(self.stages()))
        if operation.startswith("DELETE") and body.get("moveLeadsToStageId") == case.path_parameters.get("stageId"):
            body["moveLeadsToStageId"] = self.seed["stage"]  # another stage than the one deleted
        if "webhook-endpoints" in operation:
            if "url" in body:
                body["url"] = "https://hooks.example.com/in"  # a public host (resolution is stubbed)
            if "eventTypes" in body:
                body["eventTypes"] = [random.choice(WEBHOOK_TYPES)]
        if "channel" in body:
            body["channel"] = "gmail"  # the seed mailbox's
        for kind, plural in (("contact", "contacts"), ("company", "companies")):
            if operation == f"POST /api/crm/{plural}/duplicates/dismiss":
                body["ids"] = [self.seed[kind], self.fresh(kind)]  # two records of the entity
            if operation == f"POST /api/crm/{plural}/{{{kind}Id}}/merge" and "mergeId" in body:
                body["mergeId"] = self.fresh(kind)  # another record than the path's, merged away
                if isinstance(body.get("fieldsFrom"), dict) and isinstance(
                    body["fieldsFrom"].get("customFields"), dict
                ):
                    body["fieldsFrom"].pop("customFields")  # its keys must be custom fields the entity defined
        if operation == "POST /api/crm/outbound-email":
            if not body.get("to"):
                body["to"] = ["someone@customer.example"]  # the lead's contact may have no address
            self._cap(body, ("to", "cc", "bcc"), MAX_RECIPIENTS)
        if operation == "POST /api/crm/prospecting/add-to-marketing-list":
            self._cap(body, ("contactIds", "companyIds", "leadIds"), MAX_IDS_PER_ADD)
        blanked = [name for name in ("firstName", "lastName", "email") if name in body and not body[name]]
        if operation == "PATCH /api/crm/contacts/{contactId}" and blanked:
            body["firstName"] = body.get("firstName") or "Named"  # a contact keeps a name or an address
        if body.get("endDate") and not body.get("startDate"):
            body["startDate"] = body["endDate"]  # the row's startDate may be later
        if body.get("startDate") and body.get("endDate") and body["endDate"] < body["startDate"]:
            body["startDate"], body["endDate"] = body["endDate"], body["startDate"]
        if body.get("startDate") and "endDate" not in body:
            body["endDate"] = None  # the row's endDate may be earlier

    @staticmethod
    def _cap(body: dict, names: tuple[str, ...], limit: int) -> None:
        """At most `limit` items in the lists `names` together."""
        left = limit
        for name in names:
            if isinstance(body.get(name), list):
                body[name] = body[name][: max(left, 0)]
                left -= len(body[name])

    def after_call(self, case, response) -> None:
        if response.status_code >= 300:
            return
        if case.formatted_path.split("?")[0].endswith("/merge") and isinstance(case.body, dict):
            with self.lock:  # the merged record is gone
                for kind in ("contact", "company"):
                    self.known[kind].discard(case.body.get("mergeId"))
        if case.method.upper() == "DELETE":
            name = list(case.path_parameters)[-1]
            with self.lock:
                self.known[ID_KINDS[name]].discard(case.path_parameters[name])
            self.restore_seed(case.path_parameters[name])
            return
        with contextlib.suppress(ValueError):
            self.learn(case.formatted_path, json.loads(response.content))


@pytest.fixture
def no_webhook_traffic(monkeypatch):
    """Webhook URLs resolve to a public address without DNS, and nothing is ever sent."""
    from webhooks import net

    monkeypatch.setattr(net, "resolve", lambda host, port: ("93.184.216.34",))
    monkeypatch.setattr(net, "post", lambda url, body, headers, timeout: net.HttpResult(None, "", "not sent (test)", 0))
    monkeypatch.setattr(net.Sender, "post", lambda self, body, headers: net.HttpResult(None, "", "not sent (test)", 0))


@pytest.fixture
def fuzz_settings(settings, no_webhook_traffic):
    settings.API_RATE_LIMIT_PER_MINUTE = 1_000_000
    settings.API_AUTH_FAILURE_LIMIT_PER_MINUTE = 1_000_000
    settings.EMAIL_DAILY_LIMIT_PER_CONNECTION = 1_000_000
    return settings


def _seed(data: TestData, entity, user, connection) -> None:
    company = factories.make_company(entity, name="Seed Co", domain="seed.example")
    contact = factories.make_contact(entity, company=company, email="seed@customer.example")
    lead = factories.make_lead(entity, title="Seed deal", company=company, contact=contact, value="1200.00")
    marketing_list = factories.make_list(entity, name="Seed list")
    data.seed = {
        "company": str(company.pk),
        "contact": str(contact.pk),
        "lead": str(lead.pk),
        "activity": str(factories.make_activity(entity, lead=lead, type="call").pk),
        "list": str(marketing_list.pk),
        "member": str(factories.make_list_member(marketing_list, contact).pk),
        "membership": str(contact.memberships.get().pk),
        "connection": str(connection.pk),
        "user": str(user.pk),
    }
    for kind, value in data.seed.items():
        data.known[kind].add(value)
    data.parent[data.seed["membership"]] = data.seed["contact"]
    data.parent[data.seed["member"]] = data.seed["list"]
    data.seed["stage"] = data.fresh("stage")  # not a system stage: its kind may change
    data.seed["endpoint"] = data.fresh("endpoint")
    data.stages()
    data.seed["email"] = data.seed_email()
    data.seed["customField"] = data.fresh("customField")
    data.seed["import"] = data.fresh("import")


def test_schemathesis_finds_nothing(live_server, fuzz_settings, entity, user, make_connection, tmp_path):  # noqa: F811
    issued = factories.make_key(entity, user)
    data = TestData(live_server.url, issued.secret, str(entity.pk))
    _seed(data, entity, user, make_connection("gmail"))

    config = tmp_path / "schemathesis.toml"
    config.write_text(
        f"""
base-url = "{live_server.url}"
max-time = {TIME_BUDGET_SECONDS}
workers = 1
seed = {SEED}

[cache]
enabled = false

[generation]
max-examples = {MAX_EXAMPLES}
allow-x00 = false
codec = "utf-8"
database = "none"

[phases.stateful]
max-steps = {STATEFUL_MAX_STEPS}

[parameters]
"query.entityId" = "{entity.pk}"

[auth.openapi.bearerAuth]
bearer = "{issued.secret}"

[warnings]
fail-on = true

[checks]
enabled = true

# The multipart import: for valid cases the hook must put a CSV into the form, and schemathesis
# sends some of its invalid header cases with that same form, valid by then, so they are rightly
# accepted. The import's refusals of invalid input are tested in tests/crm/test_import.py.
[[operations]]
include-path = "/api/crm/imports"
include-method = "POST"
checks.negative_data_rejection.enabled = false
"""
    )

    schemathesis.deserializer("text/csv")(lambda context, response: response.content.decode("utf-8-sig"))

    @schemathesis.hook("before_call")
    def supply_test_data(context, case, kwargs):
        data.before_call(case)

    @schemathesis.hook("after_call")
    def learn_ids(context, case, response):
        data.after_call(case, response)

    started = time.monotonic()
    logging.disable(logging.INFO)  # the access log of a few thousand requests says nothing here
    try:
        result = CliRunner().invoke(
            schemathesis_cli,
            [
                "--config-file",
                str(config),
                "run",
                f"{live_server.url}/api/schema?format=json",
                "--phases",
                "coverage,fuzzing,stateful",
                "--no-color",
            ],
            catch_exceptions=False,
        )
    finally:
        logging.disable(logging.NOTSET)
        schemathesis.hooks.unregister(supply_test_data)
        schemathesis.hooks.unregister(learn_ids)
    elapsed = time.monotonic() - started
    print(result.output)
    print(f"schemathesis ran in {elapsed:.0f}s")
    assert result.exit_code == 0, result.output[-20000:]
    for phase in ("Coverage", "Fuzzing", "Stateful"):  # each phase ran (the budget was not spent before it)
        assert re.search(rf"✅  {phase} \(in", result.output), result.output
    total, tested = re.search(r"Selected: \d+/(\d+)\s+Tested: (\d+)", result.output).groups()
    assert tested == total, f"only {tested} of {total} operations tested"
