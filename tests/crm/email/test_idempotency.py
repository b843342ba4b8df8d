"""Idempotency-Key on every POST under /api/crm (axiomatic.idempotency, against the Redis cache)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from django.core.cache import caches
from django.db import connections
from django.test import Client

from crm.choices import EmailStatus
from crm.models import Company, OutboundEmail
from tests.crm.email.conftest import email_body, wait_for
from tests.helpers import ApiClient, assert_error


def _key(value: str) -> dict:
    return {"Idempotency-Key": value}


def test_same_key_and_body_replays_the_first_response(api):
    first = api.post("/companies", {"name": "Acme"}, headers=_key("k-1"))
    second = api.post("/companies", {"name": "Acme"}, headers=_key("k-1"))

    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert second["Content-Type"].startswith("application/json")
    assert Company.objects.count() == 1


def test_stored_answers_are_encrypted_at_rest(api):
    """The store keeps answers a day, and some hold a secret shown once (a webhook endpoint's)."""
    first = api.post("/companies", {"name": "Plaintext Probe"}, headers=_key("k-enc"))
    backend = caches["default"]
    redis = backend._cache.get_client()
    stored = b"".join(redis.get(key) or b"" for key in redis.scan_iter(match=f"{backend.key_prefix}:*"))
    assert stored  # the answer is kept...
    assert b"Plaintext Probe" not in stored  # ...but cannot be read there
    replay = api.post("/companies", {"name": "Plaintext Probe"}, headers=_key("k-enc"))
    assert replay["Idempotent-Replayed"] == "true" and replay.json() == first.json()


def test_json_key_order_and_spacing_do_not_matter(api):
    api.post("/companies", raw='{"name": "Acme", "role": "customer"}', headers=_key("k-order"))
    again = api.post("/companies", raw='{"role":"customer","name":"Acme"}', headers=_key("k-order"))
    assert again["Idempotent-Replayed"] == "true"
    assert Company.objects.count() == 1


def test_same_key_with_another_body_is_422(api):
    api.post("/companies", {"name": "Acme"}, headers=_key("k-2"))
    body = assert_error(api.post("/companies", {"name": "Other"}, headers=_key("k-2")), 422)
    assert "different request" in body["error"]
    assert_error(api.post("/contacts", {"firstName": "Acme"}, headers=_key("k-2")), 422)  # another route
    assert Company.objects.count() == 1


def test_without_key_or_with_new_key_creates_again(api):
    api.post("/companies", {"name": "Acme"}, headers=_key("k-3"))
    api.post("/companies", {"name": "Acme"}, headers=_key("k-4"))
    api.post("/companies", {"name": "Acme"})
    assert Company.objects.count() == 3


def test_rejected_requests_are_not_kept(api):
    rejected = api.post("/companies", {"name": ""}, headers=_key("k-5"))
    assert rejected.status_code == 400
    fixed = api.post("/companies", {"name": "Acme"}, headers=_key("k-5"))
    assert fixed.status_code == 201 and "Idempotent-Replayed" not in fixed


def test_keys_are_scoped_per_credential_and_entity(api, make_api, other_api):
    api.post("/companies", {"name": "Acme"}, headers=_key("shared"))
    second_key = make_api()
    mine_again = second_key.post("/companies", {"name": "Acme"}, headers=_key("shared"))
    theirs = other_api.post("/companies", {"name": "Acme"}, headers=_key("shared"))
    assert mine_again.status_code == theirs.status_code == 201
    assert "Idempotent-Replayed" not in mine_again and "Idempotent-Replayed" not in theirs
    assert Company.objects.count() == 3


def test_session_requests_are_scoped_per_user(client, user, entity):
    client.force_login(user)
    headers = {"x-entity-id": str(entity.pk), "Idempotency-Key": "browser-1"}
    first = client.post("/api/crm/companies", {"name": "Acme"}, content_type="application/json", headers=headers)
    second = client.post("/api/crm/companies", {"name": "Acme"}, content_type="application/json", headers=headers)
    assert first.status_code == 201 and second["Idempotent-Replayed"] == "true"
    assert Company.objects.count() == 1


def test_revoked_key_gets_401_not_a_replay(api):
    from apikeys.services import api_key_revoke

    api.post("/companies", {"name": "Acme"}, headers=_key("k-revoked"))
    api_key_revoke(api_key=api.api_key)
    assert_error(api.post("/companies", {"name": "Acme"}, headers=_key("k-revoked")), 401)


def _from_address(address: str, secret: str, entity) -> ApiClient:
    return ApiClient(Client(REMOTE_ADDR=address), secret=secret, entity=entity, user=None)


def _fresh_minute(margin: float = 3.0) -> None:
    """The failure budget counts in one-minute windows; start well inside one."""
    remaining = 60 - (time.time() % 60)
    if remaining < margin:
        time.sleep(remaining + 0.05)


def test_a_failed_bearer_post_with_a_key_counts_once_against_the_address(settings, entity):
    """The middleware and the view share one authentication: a wrong key is one failure, not two."""
    settings.API_AUTH_FAILURE_LIMIT_PER_MINUTE = 3
    _fresh_minute()
    guesser = "198.51.100.90"
    for attempt in range(3):
        refused = _from_address(guesser, f"ak_wrong-{attempt}-123456", entity).post(
            "/companies", {"name": "Acme"}, headers=_key(f"guess-{attempt}")
        )
        assert_error(refused, 401)
        assert refused["WWW-Authenticate"] == "Bearer"
    # The fourth is past the budget of three: had each counted twice, the second would have been.
    assert_error(_from_address(guesser, "ak_wrong-3-123456", entity).get("/companies"), 429)
    assert not Company.objects.exists()


def test_past_the_failure_budget_a_post_with_a_key_is_429_with_retry_after(settings, api, entity):
    settings.API_AUTH_FAILURE_LIMIT_PER_MINUTE = 1
    _fresh_minute()
    guesser = "198.51.100.91"
    assert_error(_from_address(guesser, "ak_wrong-one-123456", entity).post("/companies", {"name": "A"}), 401)
    for secret in ("ak_wrong-two-123456", api.secret):  # a valid key too: no oracle for guesses
        refused = _from_address(guesser, secret, entity).post("/companies", {"name": "A"}, headers=_key("k-429"))
        body = assert_error(refused, 429)
        assert "Too many failed authentications" in body["error"]
        assert 1 <= int(refused["Retry-After"]) <= 61
    assert not Company.objects.exists()
    # Elsewhere the same key and Idempotency-Key work and replay as usual.
    elsewhere = _from_address("203.0.113.91", api.secret, entity)
    first = elsewhere.post("/companies", {"name": "A"}, headers=_key("k-429"))
    again = elsewhere.post("/companies", {"name": "A"}, headers=_key("k-429"))
    assert first.status_code == 201 and again["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize("key", ["", "x" * 256, "naïve", "line\tbreak"])
def test_malformed_key_is_400(api, key):
    assert_error(api.post("/companies", {"name": "Acme"}, headers=_key(key)), 400)
    assert not Company.objects.exists()


def test_longest_key_is_accepted(api):
    assert api.post("/companies", {"name": "Acme"}, headers=_key("x" * 255)).status_code == 201


def test_outbound_email_replay_queues_nothing_new(api, lead, make_connection):
    connection = make_connection("gmail")
    body = email_body(lead, connection)
    first = api.post("/outbound-email", body, headers=_key("send-1"))
    second = api.post("/outbound-email", body, headers=_key("send-1"))
    assert first.status_code == second.status_code == 202
    assert second.json() == first.json() and second["Idempotent-Replayed"] == "true"
    assert OutboundEmail.objects.count() == 1


def test_in_flight_request_answers_409_then_replays(transactional_db, api, lead, make_connection, fake_provider):
    """The first POST is still running (eager Celery sends inside it, the fake Gmail is slow)."""
    connection = make_connection("gmail")
    fake_provider.state.send_delay = 1.5
    body = email_body(lead, connection)
    results = {}
    # The same credential (idempotency keys are scoped per key), but a Django test client of its
    # own: a Client is not safe to share between threads.
    in_thread = ApiClient(Client(), secret=api.secret, entity=api.entity, user=api.user, api_key=api.api_key)

    def first_request():
        try:
            results["first"] = in_thread.post("/outbound-email", body, headers=_key("slow-1"))
        finally:
            connections.close_all()

    thread = threading.Thread(target=first_request)
    thread.start()
    try:
        wait_for(lambda: fake_provider.count("POST", "/gmail/v1/users/me/messages/send"), message="the send to start")
        in_flight = api.post("/outbound-email", body, headers=_key("slow-1"))
        assert_error(in_flight, 409)
        assert_error(api.post("/outbound-email", {**body, "subject": "Other"}, headers=_key("slow-1")), 422)
    finally:
        thread.join(15)
    assert not thread.is_alive()
    assert results["first"].status_code == 202

    replay = api.post("/outbound-email", body, headers=_key("slow-1"))
    assert replay.status_code == 202 and replay["Idempotent-Replayed"] == "true"
    assert json.loads(replay.content) == json.loads(results["first"].content)
    assert OutboundEmail.objects.count() == 1
    assert OutboundEmail.objects.get().status == EmailStatus.SENT
    assert len(fake_provider.delivered()) == 1
