"""Figures for docs/webhooks.md: recording overhead, delivery latency, deliveries per second.

Not collected by the suite (no `test_` file name); run it on purpose:

    .venv/bin/pytest tests/webhooks/measure_webhooks.py -s -p no:cacheprovider

Everything in-process against the real PostgreSQL and Redis: API writes through Django's test
client (no HTTP server, so the figures are the application's own time), a real Celery worker
(solo pool, one process) and the receiver on 127.0.0.1.
"""

from __future__ import annotations

import statistics
import time

import pytest

from axiomatic import changes
from tests.webhooks.conftest import endpoint_of
from webhooks.models import WebhookEndpoint

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

WRITES = 300


@pytest.fixture(autouse=True)
def _no_rate_limit(settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 1_000_000


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _writes(api, company_id: str, n: int) -> list[float]:
    timings = []
    for i in range(n):
        started = time.perf_counter()
        response = api.patch(f"/companies/{company_id}", {"name": f"Acme {i}"})
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    return timings


def _report(label: str, values: list[float]) -> str:
    return (
        f"{label}: p50 {statistics.median(values):.2f} ms, p90 {_percentile(values, 0.9):.2f} ms, "
        f"mean {statistics.fmean(values):.2f} ms (n={len(values)})"
    )


def test_recording_overhead(api, monkeypatch, hook_settings):
    company = api.post("/companies", {"name": "Acme"}).json()["company"]["id"]
    _writes(api, company, 30)  # warm-up
    rounds = {"with": [], "without": []}
    for _ in range(3):  # interleaved, so drift in the machine's load hits both alike
        rounds["with"] += _writes(api, company, WRITES // 3)
        with monkeypatch.context() as off:  # no snapshot (SELECT ... FOR UPDATE), no INSERT, no listener
            off.setattr(changes, "record", lambda records, using="default": 0)
            off.setattr(changes, "snapshot_fresh", lambda instance, lock=False: None)
            off.setattr(changes, "snapshot", lambda instance: {})
            rounds["without"] += _writes(api, company, WRITES // 3)
    print("\n" + _report("PATCH /companies/{id} with recording", rounds["with"]))
    print(_report("PATCH /companies/{id} without recording", rounds["without"]))
    print(f"overhead p50: {statistics.median(rounds['with']) - statistics.median(rounds['without']):.2f} ms")


def test_delivery_latency_and_throughput(api, receiver, hook_worker):
    response = api.post("/webhook-endpoints", {"url": receiver.url})
    endpoint = endpoint_of(response)
    company = api.post("/companies", {"name": "Acme"}).json()["company"]["id"]
    receiver.wait(1)

    # Latency: one write at a time; from the answer of the write (after its commit) to receipt.
    latencies = []
    for i in range(60):
        count = len(receiver.received)
        api.patch(f"/companies/{company}", {"name": f"Latency {i}"})
        committed = time.monotonic()
        item = receiver.wait(count + 1, timeout=10)[-1]
        latencies.append((item.at - committed) * 1000)
    print("\n" + _report("commit → receipt (loopback, one worker)", latencies[5:]))

    # Throughput: a backlog delivered by one worker process, one change at a time, in order.
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(enabled=False)
    backlog = 500
    for i in range(backlog):
        api.patch(f"/companies/{company}", {"name": f"Backlog {i}"})
    before = len(receiver.received)
    started = time.monotonic()
    api.patch(f"/webhook-endpoints/{endpoint.pk}", {"enabled": True})
    items = receiver.wait(before + backlog + 0, timeout=300)
    elapsed = items[before + backlog - 1].at - started
    print(f"backlog of {backlog}: {elapsed:.2f} s → {backlog / elapsed:.0f} deliveries/s (one worker process)")
    seqs = [item.json["seq"] for item in items[before:]]
    assert seqs == sorted(seqs)
