"""Authentication, entity resolution, scopes and rate limits (the auth table)."""

from __future__ import annotations

import hashlib
import io
import json
import time
import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apikeys.models import ApiKey
from apikeys.services import api_key_revoke
from crm.models import Company
from tests import factories
from tests.helpers import ApiClient, assert_error

COMPANIES = "/api/crm/companies"


def assert_unauthenticated(response) -> dict:
    body = assert_error(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer")
    return body


# --- 401: no usable credentials ---------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer ",
        "ak_abcdefghijklmnop",
        "Basic dXNlcjpwYXNz",
        "Token ak_abcdefghijklmnopqrstuvwxyz",
        "Bearer ak_one ak_two",
    ],
    ids=["keyword-only", "empty-token", "no-keyword", "basic", "token-keyword", "two-tokens"],
)
def test_malformed_authorization_header_is_401(client, entity, header):
    response = client.get(COMPANIES, {"entityId": str(entity.pk)}, headers={"Authorization": header})
    assert_unauthenticated(response)


def test_unknown_key_is_401(client, entity, api):
    # Same prefix as a real key, different secret: the prefix alone must not authenticate.
    forged = api.secret[:-4] + ("AAAA" if not api.secret.endswith("AAAA") else "BBBB")
    for secret in ("ak_" + "x" * 43, forged, "not-an-ak-key-at-all"):
        response = client.get(COMPANIES, {"entityId": str(entity.pk)}, headers={"Authorization": f"Bearer {secret}"})
        assert_unauthenticated(response)


def test_revoked_key_is_401(api):
    assert api.get("/companies").status_code == 200
    api_key_revoke(api.api_key)
    assert_unauthenticated(api.get("/companies"))


def test_expired_key_is_401(make_api):
    expired = make_api(expires_at=timezone.now() - timedelta(seconds=1))
    assert_unauthenticated(expired.get("/companies"))


def test_key_expiring_in_the_future_works(make_api):
    fresh = make_api(expires_at=timezone.now() + timedelta(days=1))
    assert fresh.get("/companies").status_code == 200


def test_key_made_by_command_with_expires_in_zero_days_is_401(entity, user):
    out = io.StringIO()
    call_command(
        "create_api_key", "--entity", str(entity.pk), "--scopes", "read:crm", "--expires-in-days", "0", stdout=out
    )
    secret = json.loads(out.getvalue())["key"]
    response = Client().get(COMPANIES, {"entityId": str(entity.pk)}, headers={"Authorization": f"Bearer {secret}"})
    assert_unauthenticated(response)


def test_key_of_deactivated_user_is_401(api, user):
    user.is_active = False
    user.save(update_fields=["is_active"])
    assert_unauthenticated(api.get("/companies"))


# --- 400: entityId missing, malformed or contradictory ----------------------------------------


@pytest.mark.parametrize("value", ["not-a-uuid", "123", "", "00000000-0000-0000-0000-00000000000Z"])
def test_entity_id_that_is_not_a_uuid_is_400(api, value):
    body = assert_error(api.get("/companies", entity_id=value), 400)
    assert "entityId" in body["error"]


def test_entity_id_in_body_that_is_not_a_string_is_400(api):
    assert_error(api.post("/companies", {"name": "Acme", "entityId": 42}, entity_id=None), 400)


def test_entity_id_in_body_alone_is_accepted(api, entity):
    response = api.post("/companies", {"name": "Acme", "entityId": str(entity.pk)}, entity_id=None)
    assert response.status_code == 201, response.content


def test_entity_id_in_query_and_body_disagreeing_is_400(api, entity):
    response = api.post("/companies", {"name": "Acme", "entityId": str(uuid.uuid4())})
    body = assert_error(response, 400)
    assert "entityId" in body["error"]


def test_entity_id_disagreement_is_400_even_when_body_names_another_real_entity(api, other_entity):
    # Query names the key's entity, body another existing entity: a 400, never a 403.
    response = api.post("/companies", {"name": "Acme", "entityId": str(other_entity.pk)})
    assert_error(response, 400)


def test_entity_id_disagreement_is_400_even_when_query_names_another_real_entity(api, entity, other_entity):
    response = api.post("/companies", {"name": "Acme", "entityId": str(entity.pk)}, entity_id=other_entity.pk)
    assert_error(response, 400)


def test_entity_id_repeated_in_query_with_different_values_is_400(api, entity, other_entity):
    response = api.client.get(
        f"{COMPANIES}?entityId={entity.pk}&entityId={other_entity.pk}",
        headers={"Authorization": f"Bearer {api.secret}"},
    )
    assert_error(response, 400)


def test_entity_id_in_query_and_body_agreeing_is_accepted(api, entity):
    response = api.post("/companies", {"name": "Acme", "entityId": str(entity.pk)})
    assert response.status_code == 201, response.content


# --- 403: an entity the key is not for (missing scopes: test_api_contract.py) ------------------


def test_entity_id_that_exists_nowhere_is_403_for_a_key(api):
    assert_error(api.get("/companies", entity_id=uuid.uuid4()), 403)


def test_post_with_entity_id_of_another_entity_in_body_is_403_and_creates_nothing(api, other_entity):
    response = api.post("/companies", {"name": "Sneaky", "entityId": str(other_entity.pk)}, entity_id=None)
    assert_error(response, 403)
    assert not Company.objects.filter(name="Sneaky").exists()


# --- Browser sessions -------------------------------------------------------------------------


def _session_client(user, *, enforce_csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=enforce_csrf)
    client.force_login(user)
    return client


def test_session_member_with_entity_header_can_list(user, entity):
    factories.make_company(entity, name="Visible")
    client = _session_client(user)
    response = client.get(COMPANIES, headers={"x-entity-id": str(entity.pk)})
    assert response.status_code == 200, response.content
    assert [c["name"] for c in response.json()["companies"]] == ["Visible"]


def test_session_member_with_entity_id_query_can_list(user, entity):
    client = _session_client(user)
    assert client.get(COMPANIES, {"entityId": str(entity.pk)}).status_code == 200


def test_session_non_member_is_403(other_user, entity):
    client = _session_client(other_user)
    assert_error(client.get(COMPANIES, headers={"x-entity-id": str(entity.pk)}), 403)


def test_session_entity_header_and_query_disagreeing_is_400(user, entity, other_entity):
    client = _session_client(user)
    response = client.get(COMPANIES, {"entityId": str(other_entity.pk)}, headers={"x-entity-id": str(entity.pk)})
    assert_error(response, 400)


def test_session_without_entity_is_400(user, entity):
    assert_error(_session_client(user).get(COMPANIES), 400)


def test_session_post_without_csrf_token_is_refused(user, entity):
    client = _session_client(user, enforce_csrf=True)
    response = client.post(
        COMPANIES, {"name": "No CSRF"}, content_type="application/json", headers={"x-entity-id": str(entity.pk)}
    )
    body = assert_error(response, 403)
    assert "CSRF" in body["error"]
    assert not Company.objects.filter(name="No CSRF").exists()


def test_session_post_with_csrf_token_is_accepted(user, entity):
    client = _session_client(user, enforce_csrf=True)
    client.get("/accounts/login/")  # the login page sets the CSRF cookie, as in a browser
    token = client.cookies["csrftoken"].value
    response = client.post(
        COMPANIES,
        {"name": "With CSRF"},
        content_type="application/json",
        headers={"x-entity-id": str(entity.pk), "X-CSRFToken": token},
    )
    assert response.status_code == 201, response.content
    assert response.json()["company"]["name"] == "With CSRF"


def test_api_key_post_needs_no_csrf_token(entity, user):
    issued = factories.make_key(entity, user)
    api = ApiClient(Client(enforce_csrf_checks=True), secret=issued.secret, entity=entity, user=user)
    assert api.post("/companies", {"name": "Script Co"}).status_code == 201


# --- lastUsedAt -------------------------------------------------------------------------------


def _api_key_updates(queries) -> list[str]:
    table = ApiKey._meta.db_table
    return [q["sql"] for q in queries if q["sql"].startswith("UPDATE") and table in q["sql"]]


def test_last_used_at_is_set_on_first_use(api, django_capture_on_commit_callbacks):
    assert api.api_key.last_used_at is None
    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        assert api.get("/companies").status_code == 200
    api.api_key.refresh_from_db()
    assert api.api_key.last_used_at is not None
    assert api.api_key.last_used_at >= before


def test_last_used_at_is_written_after_the_request_transaction_not_inside_it(api):
    # Inside the request it would hold the key's row lock and queue concurrent requests of the key
    # (and vanish with a request that rolls back). The view's transaction is a savepoint here.
    with CaptureQueriesContext(connection) as queries:
        assert api.get("/companies").status_code == 200
    sql = [q["sql"] for q in queries.captured_queries]
    [update] = _api_key_updates(queries.captured_queries)
    transaction_ends = [i for i, q in enumerate(sql) if q.startswith(("RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT"))]
    assert transaction_ends, sql
    assert sql.index(update) > max(transaction_ends)


def test_last_used_at_is_written_at_most_once_a_minute(api, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert api.get("/companies").status_code == 200
    api.api_key.refresh_from_db()
    first = api.api_key.last_used_at
    assert first is not None

    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks(execute=True):
        assert api.get("/companies").status_code == 200
    assert _api_key_updates(queries.captured_queries) == []
    api.api_key.refresh_from_db()
    assert api.api_key.last_used_at == first


def test_last_used_at_is_updated_again_after_a_minute(api, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert api.get("/companies").status_code == 200
    long_ago = timezone.now() - timedelta(minutes=2)
    ApiKey.objects.filter(pk=api.api_key.pk).update(last_used_at=long_ago)

    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks(execute=True):
        assert api.get("/companies").status_code == 200
    assert len(_api_key_updates(queries.captured_queries)) == 1
    api.api_key.refresh_from_db()
    assert api.api_key.last_used_at > long_ago + timedelta(minutes=1)


# --- Secrets at rest --------------------------------------------------------------------------


def test_only_a_hash_of_the_secret_is_stored(api):
    secret = api.secret
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT t::text FROM {ApiKey._meta.db_table} t WHERE id = %s", [api.api_key.pk])
        (row_text,) = cursor.fetchone()
    assert secret not in row_text
    assert secret[len("ak_") :] not in row_text
    assert hashlib.sha256(secret.encode()).hexdigest() in row_text
    # Every column, one by one, through the ORM as well.
    for value in ApiKey.objects.filter(pk=api.api_key.pk).values().get().values():
        assert secret not in str(value)


def test_issued_secrets_have_the_ak_prefix_and_are_unique(entity, user):
    secrets = {factories.make_key(entity, user).secret for _ in range(5)}
    assert len(secrets) == 5
    assert all(secret.startswith("ak_") and len(secret) >= 40 for secret in secrets)


# --- Rate limit -------------------------------------------------------------------------------


def _wait_for_fresh_window(margin: float = 2.0) -> None:
    """The limit uses one-minute windows; start well inside one so the burst is not split."""
    remaining = 60 - (time.time() % 60)
    if remaining < margin:
        time.sleep(remaining + 0.05)


def test_rate_limit_answers_429_with_retry_after_and_envelope(api, make_api, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 3
    _wait_for_fresh_window()
    for _ in range(3):
        assert api.get("/companies").status_code == 200
    response = api.get("/companies")
    body = assert_error(response, 429)
    retry_after = int(response["Retry-After"])
    assert 1 <= retry_after <= 61
    assert body["error"]

    # The budget is the user's: another key of the same user is limited too, another user is not.
    assert_error(make_api().get("/companies"), 429)
    other_user = factories.make_user()
    other_entity = factories.make_entity(name="Other Co", owner=other_user)
    assert make_api(user=other_user, entity=other_entity).get("/companies").status_code == 200


def test_rate_limit_counts_every_method(api, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 2
    _wait_for_fresh_window()
    assert api.post("/companies", {"name": "One"}).status_code == 201
    assert api.get("/companies").status_code == 200
    assert_error(api.post("/companies", {"name": "Three"}), 429)
    assert not Company.objects.filter(name="Three").exists()


def test_rate_limit_applies_to_signed_in_browser_users_too(user, entity, other_user, other_entity, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 2
    browser = Client()
    browser.force_login(user)
    headers = {"x-entity-id": str(entity.pk)}
    assert [browser.get("/api/crm/companies", headers=headers).status_code for _ in range(2)] == [200, 200]
    limited = browser.get("/api/crm/companies", headers=headers)
    assert_error(limited, 429)
    assert int(limited["Retry-After"]) >= 1
    # Counted per user: someone else is not affected.
    colleague = Client()
    colleague.force_login(other_user)
    assert colleague.get("/api/crm/companies", headers={"x-entity-id": str(other_entity.pk)}).status_code == 200
