"""Webhook delivery end to end: API writes commit, a real Celery worker (Redis broker) delivers to
an HTTP receiver on 127.0.0.1, and `standardwebhooks` verifies every signature."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone
from standardwebhooks import Webhook

from axiomatic.models import Change
from tests.webhooks.conftest import endpoint_of, worker_on
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from webhooks.tasks import due_endpoints, sweep

pytestmark = [pytest.mark.worker]


def make_endpoint(api, receiver, **body) -> tuple[WebhookEndpoint, str]:
    response = api.post("/webhook-endpoints", {"url": receiver.url, **body})
    assert response.status_code == 201, response.content
    return endpoint_of(response), response.json()["webhookEndpoint"]["secret"]


def verified(secret: str, item) -> dict:
    return Webhook(secret).verify(item.body, item.headers)


def feed_changes(api) -> dict:
    """Every change of the entity by id, as the feed answers it."""
    found, cursor = {}, None
    while True:
        body = api.get("/changes", {"limit": 500, **({"cursor": cursor} if cursor else {})}).json()
        found.update({c["id"]: c for c in body["changes"]})
        cursor = body["nextCursor"]
        if not body["hasMore"]:
            return found


def wait_until(predicate, timeout=15.0, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {message}")


def test_signed_per_standard_webhooks_and_received_within_two_seconds(api, receiver, hook_worker):
    endpoint, secret = make_endpoint(api, receiver)
    sent_at = time.monotonic()
    company = api.post("/companies", {"name": "Acme"}).json()["company"]
    (item,) = receiver.wait(1, timeout=5)
    assert item.at - sent_at < 2.0, f"delivered {item.at - sent_at:.2f}s after the commit"
    body = verified(secret, item)
    change = feed_changes(api)[body["id"]]
    assert body == change  # the webhook body is the feed's change object
    assert body["type"] == "company.created" and body["data"] == company
    assert item.headers["webhook-id"] == body["id"]
    assert abs(int(item.headers["webhook-timestamp"]) - time.time()) < 30
    assert item.headers["content-type"] == "application/json"
    with pytest.raises(Exception, match="signature"):
        Webhook("whsec_" + "A" * 44).verify(item.body, item.headers)
    deliveries = api.get(f"/webhook-endpoints/{endpoint.pk}/deliveries").json()
    (logged,) = deliveries["deliveries"]
    assert logged["eventId"] == body["id"] and logged["seq"] == body["seq"] and logged["status"] == "succeeded"
    assert logged["responseStatus"] == 200 and logged["attempt"] == 1 and logged["error"] is None
    assert {"page", "total", "hasMore", "nextCursor"} <= set(deliveries)


def test_retries_keep_the_webhook_id_honour_retry_after_and_log_4_kb(api, receiver, hook_worker, settings):
    settings.WEBHOOK_RETRY_SCHEDULE = "0.5,60"
    receiver.answers = [(500, {}, 0.0), (503, {"Retry-After": "1"}, 0.0)]
    endpoint, secret = make_endpoint(api, receiver)
    api.post("/companies", {"name": "Acme"})
    items = receiver.wait(3, timeout=10)  # the 60 s step was replaced by Retry-After: 1
    ids = {item.headers["webhook-id"] for item in items}
    assert len(ids) == 1
    timestamps = [int(item.headers["webhook-timestamp"]) for item in items]
    assert timestamps == sorted(timestamps)
    assert all(verified(secret, item)["id"] in ids for item in items)
    log = wait_until(
        lambda: (
            (rows := api.get(f"/webhook-endpoints/{endpoint.pk}/deliveries").json()["deliveries"])
            and rows[0]["status"] == "succeeded"
            and rows
        ),
        message="the third attempt to be logged",
    )
    assert [(d["attempt"], d["status"], d["responseStatus"]) for d in log] == [
        (3, "succeeded", 200),
        (2, "failed", 503),
        (1, "failed", 500),
    ]
    assert log[1]["nextAttemptAt"] and log[2]["nextAttemptAt"] and log[0]["nextAttemptAt"] is None
    assert all(len(d["responseBody"].encode()) <= 4096 for d in log) and len(log[2]["responseBody"]) == 4096
    assert log[2]["error"] == "HTTP 500" and log[2]["durationMs"] is not None
    endpoint.refresh_from_db()
    assert endpoint.failed_attempts == 0 and endpoint.enabled


def test_order_holds_under_rapid_updates(api, receiver, hook_worker):
    _, secret = make_endpoint(api, receiver)
    lead = api.post("/leads", {"title": "v0"}).json()["lead"]
    for n in range(1, 26):
        assert api.patch(f"/leads/{lead['id']}", {"title": f"v{n}"}).status_code == 200
    items = receiver.wait(26, timeout=30)
    bodies = [verified(secret, item) for item in items]
    assert [b["seq"] for b in bodies] == sorted(b["seq"] for b in bodies)
    assert [b["data"]["title"] for b in bodies] == [f"v{n}" for n in range(26)]
    assert len({b["id"] for b in bodies}) == 26


def test_a_410_disables_and_enabling_again_delivers_everything_since(api, receiver, hook_worker):
    receiver.answers = [(410, {}, 0.0)]
    endpoint, secret = make_endpoint(api, receiver)
    api.post("/companies", {"name": "First"})
    receiver.wait(1)
    wait_until(lambda: not WebhookEndpoint.objects.get(pk=endpoint.pk).enabled, message="the endpoint to be disabled")
    state = api.get(f"/webhook-endpoints/{endpoint.pk}").json()["webhookEndpoint"]
    assert state["status"] == "disabled" and state["enabled"] is False
    for n in range(5):
        api.post("/companies", {"name": f"While disabled {n}"})
    time.sleep(1.0)
    assert len(receiver.received) == 1  # nothing while disabled
    assert api.patch(f"/webhook-endpoints/{endpoint.pk}", {"enabled": True}).status_code == 200
    items = receiver.wait(7, timeout=15)
    names = [verified(secret, item)["data"]["name"] for item in items[1:]]
    assert names == ["First"] + [f"While disabled {n}" for n in range(5)]
    assert items[1].headers["webhook-id"] == items[0].headers["webhook-id"]  # the 410'd one again, same id


def test_running_out_of_the_schedule_disables_and_keeps_the_place(api, receiver, hook_worker, settings):
    settings.WEBHOOK_RETRY_SCHEDULE = "0.2,0.2"
    receiver.default = (500, {}, 0.0)
    endpoint, _ = make_endpoint(api, receiver)
    place = endpoint.delivered_seq
    api.post("/companies", {"name": "Never arrives"})
    receiver.wait(3, timeout=10)
    wait_until(lambda: not WebhookEndpoint.objects.get(pk=endpoint.pk).enabled, message="the endpoint to be disabled")
    endpoint.refresh_from_db()
    assert endpoint.delivered_seq == place and "Gave up after 3 attempts" in endpoint.disabled_reason
    time.sleep(1.0)
    assert len(receiver.received) == 3


def test_replay_delivers_again_with_the_same_ids(api, receiver, hook_worker):
    endpoint, secret = make_endpoint(api, receiver)
    for n in range(3):
        api.post("/companies", {"name": f"Co {n}"})
    first = [verified(secret, item) for item in receiver.wait(3)]
    response = api.post(f"/webhook-endpoints/{endpoint.pk}/replay", {"fromSeq": first[1]["seq"]})
    assert response.status_code == 202
    again = [verified(secret, item) for item in receiver.wait(5)[3:]]
    assert [b["id"] for b in again] == [b["id"] for b in first[1:]] and again == first[1:]


def test_rotation_signs_with_both_secrets_for_a_day(api, receiver, hook_worker):
    endpoint, old = make_endpoint(api, receiver)
    new = api.post(f"/webhook-endpoints/{endpoint.pk}/rotate-secret", {}).json()["webhookEndpoint"]["secret"]
    api.post("/companies", {"name": "Acme"})
    (item,) = receiver.wait(1)
    assert len(item.headers["webhook-signature"].split(" ")) == 2
    assert verified(new, item) == verified(old, item)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(previous_secret_expires_at=timezone.now())
    api.post("/companies", {"name": "Later"})
    later = receiver.wait(2)[1]
    assert len(later.headers["webhook-signature"].split(" ")) == 1 and verified(new, later)
    with pytest.raises(Exception, match="signature"):
        verified(old, later)


def test_a_test_event_is_delivered_now_outside_the_stream(api, receiver, hook_worker):
    endpoint, secret = make_endpoint(api, receiver)
    response = api.post(f"/webhook-endpoints/{endpoint.pk}/test", {})
    assert response.status_code == 202
    (item,) = receiver.wait(1)
    body = verified(secret, item)
    assert body["type"] == "webhook.test" and body["seq"] is None and body["id"] == response.json()["eventId"]
    assert body["objectId"] == str(endpoint.pk) and body["previous"] is None
    log = wait_until(lambda: api.get(f"/webhook-endpoints/{endpoint.pk}/deliveries").json()["deliveries"])
    assert log[0]["eventType"] == "webhook.test" and log[0]["seq"] is None
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).delivered_seq == endpoint.delivered_seq


def test_a_redirect_is_a_failed_attempt(api, receiver, hook_worker, settings):
    settings.WEBHOOK_RETRY_SCHEDULE = "60"
    receiver.answers = [(302, {"Location": "http://127.0.0.1:1/elsewhere"}, 0.0)]
    endpoint, _ = make_endpoint(api, receiver)
    api.post("/companies", {"name": "Acme"})
    receiver.wait(1)
    log = wait_until(
        lambda: WebhookDelivery.objects.filter(endpoint=endpoint, status=DeliveryStatus.FAILED).first(),
        message="the failed attempt",
    )
    assert log.response_status == 302 and "Redirects are not followed" in log.error


def test_one_failing_endpoint_does_not_slow_the_others(api, receivers, hook_worker, settings):
    settings.WEBHOOK_RETRY_SCHEDULE = "30,30"
    failing, healthy = receivers(), receivers()
    failing.default = (500, {}, 0.0)
    make_endpoint(api, failing)
    _, secret = make_endpoint(api, healthy)
    started = time.monotonic()
    for n in range(5):
        api.post("/companies", {"name": f"Co {n}"})
    items = healthy.wait(5, timeout=10)
    assert items[-1].at - started < 5.0
    assert [verified(secret, item)["data"]["name"] for item in items] == [f"Co {n}" for n in range(5)]
    assert len(failing.received) == 1  # one attempt, then back-off: it holds nobody up


def test_a_worker_killed_mid_delivery_leads_to_a_redelivery_with_the_same_id(api, receiver, hook_worker):
    endpoint, secret = make_endpoint(api, receiver)
    # A worker holds the claim (lease still running): the kick after this write finds it busy.
    token = uuid.uuid4()
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        claim_token=token, claimed_until=timezone.now() + timedelta(seconds=60)
    )
    api.post("/companies", {"name": "In flight"})
    change = Change.objects.filter(entity_id=endpoint.entity_id).order_by("-seq").first()
    # ... and dies mid-POST: its attempt stays `pending`, the place does not move.
    WebhookDelivery.objects.create(
        entity_id=endpoint.entity_id,
        endpoint=endpoint,
        event_id=change.event_id,
        event_type=change.type,
        seq=change.seq,
        status=DeliveryStatus.PENDING,
        attempted_at=timezone.now(),
    )
    time.sleep(0.5)
    assert receiver.received == [] and due_endpoints() == []  # claimed: the sweep leaves it alone
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(claimed_until=timezone.now() - timedelta(seconds=1))
    assert due_endpoints() == [str(endpoint.pk)]
    assert sweep() == 1
    (item,) = receiver.wait(1)
    assert item.headers["webhook-id"] == change.event_id and verified(secret, item)["seq"] == change.seq
    statuses = wait_until(
        lambda: (
            (
                s := list(
                    WebhookDelivery.objects.filter(endpoint=endpoint)
                    .order_by("attempted_at")
                    .values_list("status", "error")
                )
            )
            and s[-1][0] == DeliveryStatus.SUCCEEDED
            and s
        ),
        message="the redelivery to be logged",
    )
    assert statuses[0][0] == DeliveryStatus.FAILED and "Interrupted" in statuses[0][1]


# --- Redis (the broker) away ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OwnRedis:
    def __init__(self, tmp_path: Path, port: int):
        self.port, self.dir, self.process = port, tmp_path, None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path):
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    redis = OwnRedis(tmp_path, _free_port())
    redis.start()
    yield redis
    redis.kill()


def test_with_the_broker_down_changes_are_recorded_and_delivered_once_it_is_back(
    api, receiver, own_redis, transactional_db, hook_settings
):
    from tests.crm.email.conftest import celery_on_broker

    with celery_on_broker(own_redis.url):
        endpoint, secret = make_endpoint(api, receiver)
        own_redis.kill()
        started = time.monotonic()
        for n in range(3):
            response = api.post("/companies", {"name": f"Co {n}"})
            assert response.status_code == 201, response.content
        assert time.monotonic() - started < 15  # a dead broker does not hang the writes
        recorded = [c for c in feed_changes(api).values() if c["type"] == "company.created"]
        assert [c["data"]["name"] for c in recorded] == ["Co 0", "Co 1", "Co 2"]
        assert receiver.received == []
        assert due_endpoints() == [str(endpoint.pk)]
    own_redis.start()
    with worker_on(own_redis.url):
        assert sweep() == 1  # beat's periodic sweep, run once here
        items = receiver.wait(3, timeout=15)
    bodies = [verified(secret, item) for item in items]
    assert [b["id"] for b in bodies] == [c["id"] for c in recorded]
    connection.close()
