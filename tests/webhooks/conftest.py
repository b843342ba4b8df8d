"""Fixtures for the change feed and webhooks: commit-time numbering inside test transactions, a
webhook receiver on 127.0.0.1, and the settings that let deliveries go to it.

`numbered` makes the `seq` trigger fire at once (`SET CONSTRAINTS ... IMMEDIATE`), so tests on
the `db` fixture (one transaction that never commits) see numbered changes; tests of concurrency
and of the worker use `transactional_db`, where numbering happens at each real COMMIT.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection

from webhooks.models import WebhookEndpoint


@pytest.fixture
def numbered(db):
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS axiomatic_change_number IMMEDIATE")
    yield


@pytest.fixture
def hook_settings(settings):
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOW_LOOPBACK = True
    settings.WEBHOOK_RETRY_SCHEDULE = "1,1,1"
    settings.WEBHOOK_TIMEOUT_SECONDS = 3
    settings.WEBHOOK_CLAIM_LEASE_SECONDS = 30
    return settings


@dataclass
class Received:
    headers: dict
    body: bytes
    at: float

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST and answers as told.

    `answers` is a list of (status, headers, delay) used one per request, then `default`.
    """

    server: ThreadingHTTPServer
    received: list[Received] = field(default_factory=list)
    answers: list[tuple[int, dict, float]] = field(default_factory=list)
    default: tuple[int, dict, float] = (200, {}, 0.0)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hooks"

    def next_answer(self) -> tuple[int, dict, float]:
        with self.lock:
            return self.answers.pop(0) if self.answers else self.default

    def record(self, item: Received) -> None:
        with self.lock:
            self.received.append(item)

    def bodies(self) -> list[dict]:
        with self.lock:
            return [item.json for item in self.received]

    def wait(self, count: int, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        with self.lock:
            got = [item.json.get("type") for item in self.received]
        raise AssertionError(f"expected {count} deliveries within {timeout}s, got {len(got)}: {got}")


def _handler(receiver_ref: list):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out at once (no delayed-ACK stall)

        def do_POST(self):
            receiver = receiver_ref[0]
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            status, headers, delay = receiver.next_answer()
            if delay:
                time.sleep(delay)
            receiver.record(Received({k.lower(): v for k, v in self.headers.items()}, body, time.monotonic()))
            payload = b'{"ok": true}' if status < 300 else b"nope " * 2000  # 10 KB on errors
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(payload)

        def log_message(self, *args):
            pass

    return Handler


@pytest.fixture
def receivers():
    """`receivers()` → a new `Receiver` (stopped after the test)."""
    running = []

    def start() -> Receiver:
        ref: list = []
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(ref))
        server.daemon_threads = True
        ref.append(Receiver(server))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        running.append((server, thread))
        return ref[0]

    yield start
    for server, thread in running:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def receiver(receivers):
    return receivers()


def endpoint_of(response) -> WebhookEndpoint:
    return WebhookEndpoint.objects.get(pk=response.json()["webhookEndpoint"]["id"])


# --- a real Celery worker ---------------------------------------------------------------------------


def worker_on(broker_url: str):
    """A real worker (solo pool, in a thread) on `broker_url`, consuming this run's own queue."""
    from tests.crm.email.conftest import running_worker

    return running_worker(broker_url)


@pytest.fixture
def hook_worker(transactional_db, hook_settings):
    from tests.crm.email.conftest import BROKER_URL

    with worker_on(BROKER_URL) as worker:
        yield worker
