"""Operator commands: one JSON object on stdout; failures exit non-zero with stderr."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client, override_settings
from django.utils import timezone

from apikeys.models import ApiKey
from axiomatic.models import Entity, Membership, User
from crm.models import Activity, Company, CompanyMembership, Contact, Lead, PipelineStage
from tests import factories
from tests.helpers import ApiClient, assert_error


def run(*args) -> dict:
    """Run a command in-process; its stdout must be exactly one JSON object."""
    out = io.StringIO()
    call_command(*args, stdout=out)
    text = out.getvalue().strip()
    assert "\n" not in text, text
    payload = json.loads(text)
    assert isinstance(payload, dict)
    return payload


def run_process(*args) -> subprocess.CompletedProcess:
    """Run `manage.py` as operators do, against the test database (only committed rows are visible)."""
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=Path(settings.BASE_DIR),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def api_for(secret: str, entity) -> ApiClient:
    return ApiClient(Client(), secret=secret, entity=entity, user=None)


# --- create_entity ----------------------------------------------------------------------------


def test_create_entity_prints_ids_creates_owner_and_default_stages(db):
    payload = run("create_entity", "Acme", "--owner-email", "Boss@Example.com", "--currency", "eur")
    assert set(payload) == {"entityId", "ownerUserId"}
    entity = Entity.objects.get(pk=payload["entityId"])
    assert entity.name == "Acme"
    assert entity.default_currency == "EUR"
    owner = User.objects.get(pk=payload["ownerUserId"])
    assert owner.email == "boss@example.com"
    assert Membership.objects.get(entity=entity, user=owner).role == Membership.Role.OWNER

    stages = list(PipelineStage.objects.for_entity(entity).order_by("sort_order"))
    assert [(s.name, s.kind, s.default_probability_pct, s.system_key, s.color_key, s.sort_order) for s in stages] == [
        ("New", "open", 10, "new", "slate", 0),
        ("Contacted", "open", 20, "contacted", "blue", 1),
        ("Qualified", "open", 40, "qualified", "indigo", 2),
        ("Proposal", "open", 60, "proposal", "violet", 3),
        ("Negotiation", "open", 80, "negotiation", "amber", 4),
        ("Won", "won", 100, "won", "green", 5),
        ("Lost", "lost", 0, "lost", "red", 6),
    ]


def test_create_entity_reuses_an_existing_owner_user(user):
    payload = run("create_entity", "Second Co", "--owner-email", user.email.upper())
    assert payload["ownerUserId"] == str(user.pk)
    assert user.memberships.count() == 1


def test_create_entity_without_owner_email_still_has_an_owner_for_keys(db):
    payload = run("create_entity", "Ownerless Co", "--timezone", "Europe/Berlin")
    entity = Entity.objects.get(pk=payload["entityId"])
    assert entity.time_zone == "Europe/Berlin"
    owner = User.objects.get(pk=payload["ownerUserId"])
    assert Membership.objects.get(entity=entity, user=owner).role == Membership.Role.OWNER
    key = run("create_api_key", "--entity", payload["entityId"], "--scopes", "read:crm")
    assert ApiKey.objects.get(pk=key["apiKeyId"]).user == owner


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["   "], "NAME"),
        (["Acme", "--currency", "EURO"], "currency"),
        (["Acme", "--timezone", "Mars/Olympus", "--owner-email", "tz@example.com"], "time zone"),
        (["Acme", "--owner-email", "not-an-email"], "owner-email"),
    ],
)
def test_create_entity_refuses_bad_input_and_creates_nothing(db, args, message):
    with pytest.raises(CommandError, match=message):
        run("create_entity", *args)
    assert not Entity.objects.exists()
    assert not User.objects.exists()


# --- create_user ------------------------------------------------------------------------------


def test_create_user_adds_a_member_with_the_default_role(entity):
    payload = run("create_user", "new@example.com", "--entity", str(entity.pk), "--name", "New Person")
    assert set(payload) == {"userId"}
    user = User.objects.get(pk=payload["userId"])
    assert (user.email, user.name) == ("new@example.com", "New Person")
    assert not user.has_usable_password()
    assert Membership.objects.get(entity=entity, user=user).role == Membership.Role.MEMBER


@pytest.mark.parametrize("role", ["member", "admin", "owner"])
def test_create_user_with_role(entity, role):
    payload = run("create_user", f"{role}@example.com", "--entity", str(entity.pk), "--role", role)
    assert Membership.objects.get(entity=entity, user_id=payload["userId"]).role == role


def test_create_user_with_password_can_sign_in(entity):
    run("create_user", "signin@example.com", "--entity", str(entity.pk), "--password", "correct-horse-9")
    assert Client().login(username="signin@example.com", password="correct-horse-9")


def test_create_user_for_an_existing_user_adds_membership_in_another_entity(user, other_entity):
    payload = run("create_user", user.email, "--entity", str(other_entity.pk), "--role", "admin")
    assert payload["userId"] == str(user.pk)
    assert Membership.objects.get(entity=other_entity, user=user).role == Membership.Role.ADMIN


def test_created_member_can_be_an_owner_on_the_api(api, entity):
    payload = run("create_user", "owner2@example.com", "--entity", str(entity.pk))
    response = api.post("/companies", {"name": "Owned", "ownerUserId": payload["userId"]})
    assert response.status_code == 201, response.content


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["x@example.com", "--entity", "not-a-uuid"], "UUID"),
        (["x@example.com", "--entity", "00000000-0000-0000-0000-000000000000"], "No entity"),
        (["not-an-email", "--entity", "{entity}"], "email"),
    ],
)
def test_create_user_refuses_bad_input(entity, args, message):
    args = [arg.format(entity=entity.pk) for arg in args]
    with pytest.raises(CommandError, match=message):
        run("create_user", *args)
    assert not User.objects.filter(email="x@example.com").exists()


# --- create_api_key ---------------------------------------------------------------------------


def test_create_api_key_prints_a_key_that_works_against_the_api(entity, user):
    payload = run("create_api_key", "--entity", str(entity.pk), "--scopes", "read:crm,write:crm", "--name", "CI")
    assert set(payload) == {"apiKeyId", "key"}
    assert payload["key"].startswith("ak_")
    api_key = ApiKey.objects.get(pk=payload["apiKeyId"])
    assert (api_key.name, api_key.scopes, api_key.entity, api_key.user) == (
        "CI",
        ["read:crm", "write:crm"],
        entity,
        user,
    )
    assert api_key.expires_at is None

    client = api_for(payload["key"], entity)
    assert client.post("/companies", {"name": "Via CLI key"}).status_code == 201
    assert [c["name"] for c in client.get("/companies").json()["companies"]] == ["Via CLI key"]


def test_create_api_key_scopes_are_enforced(entity):
    payload = run("create_api_key", "--entity", str(entity.pk), "--scopes", "read:crm")
    client = api_for(payload["key"], entity)
    assert client.get("/companies").status_code == 200
    assert_error(client.post("/companies", {"name": "Denied"}), 403)


def test_create_api_key_for_a_named_member(entity):
    member = factories.make_member(entity, email="member@example.com")
    payload = run("create_api_key", "--entity", str(entity.pk), "--scopes", "read:crm", "--user", "MEMBER@example.com")
    assert ApiKey.objects.get(pk=payload["apiKeyId"]).user == member
    client = api_for(payload["key"], entity)
    factories.make_company(entity, name="Member's", owner=member)
    factories.make_company(entity, name="Not member's")
    assert [c["name"] for c in client.get("/companies", {"ownerUserId": "me"}).json()["companies"]] == ["Member's"]


def test_create_api_key_expiring_in_days(entity):
    payload = run("create_api_key", "--entity", str(entity.pk), "--scopes", "read:crm", "--expires-in-days", "30")
    expires_at = ApiKey.objects.get(pk=payload["apiKeyId"]).expires_at
    assert abs(expires_at - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)
    assert api_for(payload["key"], entity).get("/companies").status_code == 200


def test_create_api_key_expiring_in_zero_days_gives_a_key_that_401s(entity):
    payload = run("create_api_key", "--entity", str(entity.pk), "--scopes", "read:crm", "--expires-in-days", "0")
    response = api_for(payload["key"], entity).get("/companies")
    assert_error(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--entity", "not-a-uuid", "--scopes", "read:crm"], "UUID"),
        (["--entity", "{entity}", "--scopes", "read:crm,admin:everything"], "admin:everything"),
        (["--entity", "{entity}", "--scopes", ","], "scope"),
        (["--entity", "{entity}", "--scopes", "read:crm", "--user", "nobody@example.com"], "nobody@example.com"),
        (["--entity", "{entity}", "--scopes", "read:crm", "--user", "{stranger}"], "not a member"),
        (["--entity", "{entity}", "--scopes", "read:crm", "--expires-in-days", "-1"], "expires-in-days"),
    ],
)
def test_create_api_key_refuses_bad_input_and_issues_nothing(entity, other_user, args, message):
    args = [arg.format(entity=entity.pk, stranger=other_user.email) for arg in args]
    with pytest.raises(CommandError, match=message):
        run("create_api_key", *args)
    assert not ApiKey.objects.exists()


# --- revoke_api_key ---------------------------------------------------------------------------


def test_revoke_api_key_makes_the_key_401(entity):
    issued = run("create_api_key", "--entity", str(entity.pk), "--scopes", "read:crm")
    client = api_for(issued["key"], entity)
    assert client.get("/companies").status_code == 200

    payload = run("revoke_api_key", issued["apiKeyId"])
    assert payload == {"apiKeyId": issued["apiKeyId"], "revoked": True}
    assert ApiKey.objects.get(pk=issued["apiKeyId"]).revoked_at is not None
    assert_error(client.get("/companies"), 401)


def test_revoke_api_key_twice_keeps_the_first_revocation_time(entity, user):
    issued = factories.make_key(entity, user)
    run("revoke_api_key", str(issued.api_key.pk))
    first = ApiKey.objects.get(pk=issued.api_key.pk).revoked_at
    assert run("revoke_api_key", str(issued.api_key.pk))["revoked"] is True
    assert ApiKey.objects.get(pk=issued.api_key.pk).revoked_at == first


def test_revoke_api_key_leaves_other_keys_working(entity, user):
    kept = factories.make_key(entity, user)
    revoked = factories.make_key(entity, user)
    run("revoke_api_key", str(revoked.api_key.pk))
    assert api_for(kept.secret, entity).get("/companies").status_code == 200


@pytest.mark.parametrize(
    ("key_id", "message"), [("not-a-uuid", "not-a-uuid"), ("6f1c2a4e-8b7d-4e0f-9a3b-2c5d7e9f1a0b", "No API key")]
)
def test_revoke_api_key_refuses_bad_ids(db, key_id, message):
    with pytest.raises(CommandError, match=message):
        run("revoke_api_key", key_id)


# --- seed_demo --------------------------------------------------------------------------------


def test_seed_demo_counts_match_the_rows_created(entity, other_entity):
    payload = run(
        "seed_demo",
        "--entity",
        str(entity.pk),
        "--companies",
        "12",
        "--contacts",
        "20",
        "--leads",
        "15",
        "--activities",
        "25",
        "--seed",
        "3",
    )
    assert payload == {"entityId": str(entity.pk), "companies": 12, "contacts": 20, "leads": 15, "activities": 25}
    assert Company.objects.for_entity(entity).count() == 12
    assert Contact.objects.for_entity(entity).count() == 20
    assert CompanyMembership.objects.for_entity(entity).filter(is_primary=True).count() == 20
    assert Lead.objects.for_entity(entity).count() == 15
    assert Activity.objects.for_entity(entity).count() == 25
    assert not Company.objects.for_entity(other_entity).exists()


def test_seeded_data_is_served_by_the_api(api, entity):
    run(
        "seed_demo",
        "--entity",
        str(entity.pk),
        "--companies",
        "7",
        "--contacts",
        "0",
        "--leads",
        "0",
        "--activities",
        "0",
    )
    body = api.get("/companies", {"pageSize": 5}).json()
    assert (body["total"], len(body["companies"]), body["hasMore"]) == (7, 5, True)


def test_seed_demo_without_entity_creates_one(db):
    payload = run("seed_demo", "--companies", "3", "--contacts", "4", "--leads", "2", "--activities", "1")
    entity = Entity.objects.get(pk=payload["entityId"])
    assert PipelineStage.objects.for_entity(entity).count() == 7
    assert Company.objects.for_entity(entity).count() == 3
    assert Lead.objects.for_entity(entity).count() == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--entity", "bogus"], "UUID"), (["--companies", "-1"], "companies"), (["--leads", "-3"], "leads")],
)
def test_seed_demo_refuses_bad_input(db, args, message):
    with pytest.raises(CommandError, match=message):
        run("seed_demo", *args)
    assert not Company.objects.exists()


# --- As a process: exit codes, stdout and stderr ----------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_commands_as_processes_print_json_and_exit_zero():
    created = run_process("create_entity", "Process Co", "--owner-email", "proc@example.com")
    assert created.returncode == 0, created.stderr
    payload = json.loads(created.stdout)
    assert Entity.objects.filter(pk=payload["entityId"], name="Process Co").exists()

    issued = run_process("create_api_key", "--entity", payload["entityId"], "--scopes", "read:crm")
    assert issued.returncode == 0, issued.stderr
    key = json.loads(issued.stdout)["key"]
    entity = Entity.objects.get(pk=payload["entityId"])
    assert api_for(key, entity).get("/companies").status_code == 200


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create_api_key", "--entity", "not-a-uuid", "--scopes", "read:crm"], "UUID"),
        (["create_api_key", "--entity", "{entity}", "--scopes", "read:crm,write:everything"], "write:everything"),
        (["revoke_api_key", "12345"], "12345"),
        (["create_user", "someone@example.com", "--entity", "bad-uuid"], "UUID"),
        (["create_user", "someone@example.com", "--entity", "{entity}", "--role", "emperor"], "emperor"),
        (["seed_demo", "--entity", "{missing}"], "No entity"),
    ],
    ids=["bad-uuid", "unknown-scope", "bad-key-id", "bad-entity", "bad-role", "missing-entity"],
)
def test_failing_commands_exit_non_zero_with_a_message_on_stderr(args, message):
    entity = factories.make_entity()
    args = [arg.format(entity=entity.pk, missing=uuid.uuid4()) for arg in args]
    result = run_process(*args)
    assert result.returncode != 0
    assert message in result.stderr
    assert result.stdout.strip() == ""
    assert "Traceback" not in result.stderr
    assert not ApiKey.objects.exists()


# --- demo_setup -------------------------------------------------------------------------------


def run_demo_setup() -> tuple[str, str]:
    """Run `demo_setup` (it prints instructions, not JSON); return the printed entity id and key."""
    out = io.StringIO()
    with override_settings(DEBUG=True):  # demo_setup refuses to run in production (DEBUG off)
        call_command("demo_setup", stdout=out)
    text = out.getvalue()
    [entity_id] = re.findall(r"entity:\s+([0-9a-f-]{36})", text)
    [secret] = re.findall(r"API key:\s+(ak_\S+)", text)
    assert f"Bearer {secret}" in text and f"entityId={entity_id}" in text
    return entity_id, secret


def demo_row_counts() -> dict:
    return {
        model.__name__: model.objects.count()
        for model in (Entity, Membership, User, PipelineStage, Company, Contact, CompanyMembership, Lead, Activity)
    }


def test_demo_setup_is_idempotent_and_prints_a_working_key(db):
    from crm.management.commands.demo_setup import DEMO_EMAIL, DEMO_ENTITY, DEMO_PASSWORD

    entity_id, secret = run_demo_setup()
    entity = Entity.objects.get(pk=entity_id)
    assert entity.name == DEMO_ENTITY
    demo = User.objects.get(email=DEMO_EMAIL)
    assert demo.is_staff and demo.is_superuser
    assert Membership.objects.get(entity=entity, user=demo).role == Membership.Role.OWNER
    assert Client().login(username=DEMO_EMAIL, password=DEMO_PASSWORD)
    counts = demo_row_counts()
    # 80 seeded activities and the demo user's 4 tasks (demo_setup._demo_tasks, for /crm/tasks); 25
    # seeded companies and 2 look-alikes (demo_setup._demo_duplicates, for /crm/duplicates).
    assert counts["Company"] == 25 + 2 and counts["Lead"] == 40 and counts["Activity"] == 80 + 4

    response = api_for(secret, entity).get("/companies")
    assert response.status_code == 200, response.content
    assert response.json()["total"] == 27
    assert api_for(secret, entity).get("/contacts/duplicates").json()["total"] >= 2
    assert api_for(secret, entity).get("/companies/duplicates").json()["total"] >= 1

    again_id, again_secret = run_demo_setup()
    assert again_id == entity_id
    assert demo_row_counts() == counts  # nothing seeded or created twice
    assert again_secret != secret
    assert ApiKey.objects.filter(entity=entity, user=demo).count() == 2
    assert api_for(again_secret, entity).get("/companies").json()["total"] == 27
    assert api_for(secret, entity).get("/companies").status_code == 200  # the first key still works


def test_demo_setup_makes_an_existing_demo_user_staff(db):
    from crm.management.commands.demo_setup import DEMO_EMAIL

    existing = factories.make_user(email=DEMO_EMAIL)
    assert not existing.is_staff
    entity_id, secret = run_demo_setup()
    existing.refresh_from_db()
    assert existing.is_staff and existing.is_superuser
    assert Membership.objects.filter(entity_id=entity_id, user=existing).exists()
    assert api_for(secret, Entity.objects.get(pk=entity_id)).get("/companies").status_code == 200
