"""Operations (docs/operations.md, the API contract (docs/api.md)): failing well when the database is away, probes,
statement timeouts, metrics, structured logs and request ids in Celery tasks.

Everything runs against the real services: an unreachable PostgreSQL is a closed port, a socket
that never answers, a TCP proxy this test stops, or `pg_terminate_backend`; a Redis that dies is a
redis-server this test starts on a port of its own and kills. The recovery and graceful-shutdown
tests run the app under gunicorn with gunicorn.conf.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import queue
import runpy
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import pytest
import requests
from celery.contrib.testing.worker import start_worker
from django.db import close_old_connections, connection, connections
from django.test import Client
from prometheus_client import REGISTRY

from axiomatic import metrics
from axiomatic.celery import app as celery_app
from axiomatic.logging import JsonFormatter, RequestIdFilter, current_request_id, logging_config
from axiomatic.ops import database as ops_database
from axiomatic.ops.dbconfig import postgresql_database
from crm.models import Company
from tests import factories
from tests.helpers import ApiClient, assert_error
from tests.ops_urls import SLOW_COMPANY

ROOT = Path(__file__).resolve().parent.parent
METRICS_TOKEN = "metrics-token-for-tests"
RETRY_AFTER = "5"


# --- helpers ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(predicate, *, timeout: float, message: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            result = predicate()
            if result:
                return result
        time.sleep(0.1)
    raise AssertionError(f"Timed out after {timeout}s waiting for {message}")


class TcpProxy:
    """127.0.0.1:<port> → upstream. `stop()` closes the listener and drops every open connection
    (clients see a dropped connection, then a refused one); `start()` listens on the same port again."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.port = free_port()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._running = threading.Event()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        self._running.set()
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        self._running.clear()
        time.sleep(0.3)  # the accept loop notices and closes the listener
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        with listener:
            while self._running.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                try:
                    server = socket.create_connection(self.upstream, timeout=5)
                    server.settimeout(None)
                except OSError:
                    client.close()
                    continue
                client.settimeout(None)
                with self._lock:
                    self._sockets |= {client, server}
                for source, target in ((client, server), (server, client)):
                    threading.Thread(target=self._pipe, args=(source, target), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def silent_server():
    """A port that accepts TCP connections and never says a word (a hung or blackholed server)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


@pytest.fixture
def database(transactional_db):
    """Moves this thread's database connection to another address and back (`down()`/`up()`)."""
    conn = connections["default"]
    saved = (conn.settings_dict["HOST"], conn.settings_dict["PORT"])

    def point_at(port: int) -> None:
        conn.close()
        conn.settings_dict["HOST"], conn.settings_dict["PORT"] = "127.0.0.1", str(port)

    def down() -> None:
        point_at(free_port())  # nothing listens there: connection refused

    def up() -> None:
        conn.close()
        conn.settings_dict["HOST"], conn.settings_dict["PORT"] = saved

    yield SimpleNamespace(down=down, up=up, point_at=point_at)
    up()


@pytest.fixture
def quiet_api(entity, user):
    """An API client whose test client does not re-raise exceptions Django handled (as a server)."""
    issued = factories.make_key(entity, user)
    return ApiClient(
        Client(raise_request_exception=False), secret=issued.secret, entity=entity, user=user, api_key=issued.api_key
    )


def assert_unavailable(response) -> dict:
    body = assert_error(response, 503)
    assert response["Retry-After"] == RETRY_AFTER
    assert "Internal server error" not in body["error"]
    return body


def assert_unavailable_page(response) -> None:
    assert response.status_code == 503, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("text/html")
    assert response["Retry-After"] == RETRY_AFTER
    assert b"Temporarily unavailable" in response.content


# --- 1. failing well: the database is unreachable ----------------------------------------------


def test_api_read_is_503_with_retry_after_while_the_database_refuses_then_recovers(quiet_api, database):
    database.down()
    assert_unavailable(quiet_api.get("/companies"))
    database.up()
    assert quiet_api.get("/companies").status_code == 200


def test_api_write_is_503_and_leaves_nothing_behind_while_the_database_refuses(quiet_api, database):
    database.down()
    assert_unavailable(quiet_api.post("/companies", {"name": "Never stored"}))
    database.up()
    assert not Company.objects.filter(name="Never stored").exists()


def test_a_failure_before_the_view_in_a_middleware_is_503_too(quiet_api, database):
    # With an Idempotency-Key the idempotency middleware authenticates the key before the view runs.
    database.down()
    response = quiet_api.post("/companies", {"name": "Never stored"}, headers={"Idempotency-Key": "ops-1"})
    assert_unavailable(response)


def test_a_page_is_a_plain_503_page_while_the_database_refuses(client, user, database):
    client.raise_request_exception = False
    client.force_login(user)
    database.down()
    assert_unavailable_page(client.get("/crm/board"))


def test_healthz_and_readyz_are_503_while_the_database_refuses(client, database):
    database.down()
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.json()["status"] == "unavailable"
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable", "checks": {"database": "down", "redis": "ok"}}
    database.up()
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200


def test_a_database_that_never_answers_is_down_within_the_connect_timeout(client, database, settings):
    with silent_server() as port:
        database.point_at(port)
        started = time.monotonic()
        response = client.get("/readyz")
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "down"
    assert elapsed < settings.DB_CONNECT_TIMEOUT_SECONDS + 3


@pytest.mark.urls("tests.ops_urls")
def test_a_connection_dropped_mid_request_is_503_and_the_next_request_reconnects(quiet_api, transactional_db):
    assert_unavailable(quiet_api.get("/api/test-dropped-connection"))
    close_old_connections()  # what the WSGI handler does when a request ends (and starts)
    assert quiet_api.get("/companies").status_code == 200


# --- 3. bounded work: statement timeouts ------------------------------------------------------


@pytest.mark.urls("tests.ops_urls")
def test_a_query_cancelled_by_the_statement_timeout_is_503_and_rolled_back(quiet_api, transactional_db):
    assert_unavailable(quiet_api.get("/api/crm/test-slow-query"))
    assert not Company.objects.filter(name=SLOW_COMPANY).exists()


@pytest.mark.urls("tests.ops_urls")
def test_a_page_whose_query_is_cancelled_is_a_503_page(client, transactional_db):
    client.raise_request_exception = False
    assert_unavailable_page(client.get("/test-slow-page"))


def _statement_timeout_of_a_new_connection() -> str:
    fresh = connections.create_connection("default")
    try:
        with fresh.cursor() as cursor:
            cursor.execute("SHOW statement_timeout")
            return cursor.fetchone()[0]
    finally:
        fresh.close()


def test_web_connections_carry_the_request_statement_timeout(db, settings):
    assert settings.DB_STATEMENT_TIMEOUT_MS == 5000
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == "5s"


@pytest.mark.parametrize(("role", "expected"), [("task", "1min"), ("command", "0"), ("web", "5s")])
def test_task_and_command_connections_replace_the_web_statement_timeout(db, role, expected):
    ops_database.set_process_role(role)
    try:
        assert _statement_timeout_of_a_new_connection() == expected
    finally:
        ops_database.set_process_role(None)


def _show_statement_timeout(cursor) -> str:
    cursor.execute("SHOW statement_timeout")
    return cursor.fetchone()[0]


def test_migrations_and_database_maintenance_run_without_the_statement_timeout(transactional_db):
    with connection._nodb_cursor() as cursor:  # CREATE/DROP DATABASE (the test database's set-up)
        assert _show_statement_timeout(cursor) == "0"
    ops_database.on_pre_migrate(sender=None)
    with connection.cursor() as cursor:
        assert _show_statement_timeout(cursor) == "0"
    ops_database.on_post_migrate(sender=None)
    with connection.cursor() as cursor:
        assert _show_statement_timeout(cursor) == "5s"


@pytest.mark.parametrize(
    ("argv", "role"),
    [(["manage.py", "migrate"], "command"), (["manage.py", "runserver"], "web"), (["gunicorn"], "web")],
)
def test_the_process_role_is_guessed_from_the_command_line(monkeypatch, argv, role):
    monkeypatch.setattr(sys, "argv", argv)
    assert ops_database.process_role() == role


def test_a_celery_worker_or_beat_process_takes_the_task_role():
    from celery import signals

    try:
        signals.celeryd_init.send(sender="worker@test", instance=None, conf=celery_app.conf, options={})
        assert ops_database.process_role() == "task"
        ops_database.set_process_role(None)
        signals.beat_init.send(sender=None)
        assert ops_database.process_role() == "task"
    finally:
        ops_database.set_process_role(None)


@pytest.mark.parametrize("pool", [False, True], ids=["persistent", "pool"])
def test_the_postgresql_settings_reuse_connections_with_timeouts(pool):
    database = postgresql_database(
        {"ENGINE": "django.db.backends.postgresql", "NAME": "x", "CONN_MAX_AGE": 60, "OPTIONS": {"options": "-c x=1"}},
        pool=pool,
        pool_max_size=7,
        connect_timeout=3,
        statement_timeout_ms=4000,
    )
    options = database["OPTIONS"]
    assert options["connect_timeout"] == 3
    assert options["options"] == "-c x=1 -c statement_timeout=4000"
    assert database["CONN_HEALTH_CHECKS"] is True
    if pool:
        assert options["pool"] == {"min_size": 1, "max_size": 7, "timeout": 3.0}
        assert database["CONN_MAX_AGE"] == 0  # Django refuses a pool with persistent connections
    else:
        assert "pool" not in options
        assert database["CONN_MAX_AGE"] == 60


def test_celery_time_limits_stay_under_the_visibility_timeout(settings):
    import crm.tasks  # noqa: F401  (registers the CRM tasks)

    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    tasks = [task for name, task in celery_app.tasks.items() if not name.startswith("celery.")]
    assert any(task.name == "crm.send_outbound_email" for task in tasks)
    for task in tasks:
        hard = task.time_limit or settings.CELERY_TASK_TIME_LIMIT
        soft = task.soft_time_limit or settings.CELERY_TASK_SOFT_TIME_LIMIT
        assert soft < hard < visibility, task.name
        assert soft >= settings.DB_TASK_STATEMENT_TIMEOUT_MS / 1000, task.name


@pytest.mark.parametrize("statement_timeout_ms", ["5000", "20000", "60000"])
def test_gunicorn_timeouts_agree_with_the_statement_timeout(monkeypatch, statement_timeout_ms):
    monkeypatch.setenv("DB_STATEMENT_TIMEOUT_MS", statement_timeout_ms)
    for name in ("GUNICORN_TIMEOUT", "GUNICORN_GRACEFUL_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert conf["timeout"] * 1000 >= 2 * int(statement_timeout_ms)
    assert conf["graceful_timeout"] * 1000 > int(statement_timeout_ms)
    assert conf["control_socket_disable"] is True


# --- Redis stopped during requests -------------------------------------------------------------


@pytest.fixture
def own_redis(tmp_path, settings):
    """A redis-server of this test's own on a free port, used as the cache; `kill()` ends it."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    port = free_port()
    pidfile = tmp_path / "redis.pid"
    subprocess.run(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--daemonize", "yes", "--pidfile", str(pidfile), "--dir", str(tmp_path)],
        check=True,
    )  # fmt: skip
    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=10, message="redis to start")
    pid = int(pidfile.read_text())
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }

    def kill() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not Path(f"/proc/{pid}").exists(), timeout=10, message="redis to die")

    yield SimpleNamespace(port=port, kill=kill)
    kill()


def test_reads_and_writes_keep_working_when_redis_dies_mid_test(api, own_redis, client):
    assert api.get("/companies").status_code == 200
    assert api.post("/companies", {"name": "Before"}).status_code == 201
    assert client.get("/readyz").json()["checks"]["redis"] == "ok"

    own_redis.kill()

    listed = api.get("/companies")
    assert listed.status_code == 200
    assert [c["name"] for c in listed.json()["companies"]] == ["Before"]
    assert api.post("/companies", {"name": "After"}).status_code == 201
    assert (
        api.patch(f"/companies/{Company.objects.get(name='After').pk}", {"name": "After, renamed"}).status_code == 200
    )
    # Without the store a repeat could not be recognised: an idempotent POST is refused, not run.
    assert_error(api.post("/companies", {"name": "Keyed"}, headers={"Idempotency-Key": "k-redis"}), 503)
    assert not Company.objects.filter(name="Keyed").exists()
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable", "checks": {"database": "ok", "redis": "down"}}


# --- 2. probes ---------------------------------------------------------------------------------


def test_livez_answers_without_touching_the_database_or_the_session(client, user, django_assert_num_queries):
    client.force_login(user)
    with django_assert_num_queries(0):
        response = client.get("/livez")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "Cookie" not in response.get("Vary", "")
    assert not response.cookies


def test_readyz_runs_one_query_and_no_session_work(client, user, django_assert_num_queries):
    client.force_login(user)
    with django_assert_num_queries(1):
        response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}
    assert response["Cache-Control"] == "no-store"
    assert not response.cookies


def test_readyz_without_a_redis_cache_says_not_configured(client, db, settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "redis": "not configured"}


@pytest.mark.parametrize("path", ["/livez", "/readyz", "/healthz"])
def test_probes_answer_an_orchestrator_on_any_host_over_plain_http(client, db, settings, path):
    settings.SECURE_SSL_REDIRECT = True  # probes come over plain HTTP to the pod's address
    response = client.get(path, headers={"Host": "10.1.2.3:8000"})
    assert response.status_code == 200


def test_probes_refuse_writes(client, db):
    assert client.post("/livez").status_code == 405


# --- 5. metrics --------------------------------------------------------------------------------


def _sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def metrics_token(settings):
    settings.METRICS_TOKEN = METRICS_TOKEN
    return METRICS_TOKEN


@pytest.mark.parametrize(
    "headers",
    [None, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {METRICS_TOKEN}"}],
    ids=["none", "wrong", "basic"],
)
def test_metrics_is_404_without_the_right_token(client, db, metrics_token, headers):
    assert client.get("/metrics", headers=headers).status_code == 404


def test_metrics_is_404_when_no_token_is_configured(client, db, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404
    assert client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).status_code == 404


def test_metrics_label_requests_by_route_template_never_by_id(api, client, entity, metrics_token):
    company = factories.make_company(entity, name="Counted")
    route = "/api/crm/companies/{companyId}"
    before = _sample("axiomatic_http_requests_total", route=route, method="GET", status="200")
    queries_before = _sample("axiomatic_db_queries_total", route=route, method="GET")
    assert api.get(f"/companies/{company.pk}").status_code == 200
    assert api.get(f"/no-such-route/{company.pk}").status_code == 404

    response = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert f'axiomatic_http_requests_total{{method="GET",route="{route}",status="200"}}' in text
    assert 'axiomatic_http_request_duration_seconds_bucket{le="0.005",method="GET",route="' in text
    assert 'route="unmatched"' in text
    assert _sample("axiomatic_http_requests_total", route=route, method="GET", status="200") == before + 1
    assert _sample("axiomatic_db_queries_total", route=route, method="GET") > queries_before
    for secret in (str(company.pk), str(entity.pk), api.secret, METRICS_TOKEN, "no-such-route"):
        assert secret not in text


def test_route_templates_of_regex_and_converter_routes():
    assert metrics.route_template("api/crm/^leads/(?P<leadId>[^/.]+)$") == "/api/crm/leads/{leadId}"
    assert (
        metrics.route_template("api/marketing/lists/<uuid:listId>/members") == "/api/marketing/lists/{listId}/members"
    )
    assert metrics.route_template("api/^(?:x|y)+$") == "unmatched"


def test_outbound_email_and_webhook_counters_count_outcomes_and_never_ids(client, db, metrics_token):
    assert (
        'axiomatic_webhook_deliveries_total{outcome="delivered"} 0.0'
        in client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).content.decode()
    )
    sent = _sample("axiomatic_outbound_emails_total", outcome="sent")
    other = _sample("axiomatic_webhook_deliveries_total", outcome="other")
    metrics.record_outbound_email("sent")
    metrics.record_webhook_delivery(f"failed for {uuid.uuid4()}")
    assert _sample("axiomatic_outbound_emails_total", outcome="sent") == sent + 1
    assert _sample("axiomatic_webhook_deliveries_total", outcome="other") == other + 1


# --- 6. logs and request ids -------------------------------------------------------------------

ECHOED: queue.Queue = queue.Queue()
task_logger = logging.getLogger("tests.operations.task")


@celery_app.task(name="tests.operations.echo_request_id", ignore_result=True)
def echo_request_id() -> None:
    task_logger.warning("echo from the task")
    ECHOED.put(current_request_id())


@pytest.fixture
def json_log_of_tasks():
    """The JSON lines `tests.operations.task` writes, formatted as production formats them."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    task_logger.addHandler(handler)
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    task_logger.removeHandler(handler)


def test_one_structured_access_line_per_request(api, entity, caplog):
    company = factories.make_company(entity)
    with caplog.at_level(logging.INFO, logger="axiomatic.access"):
        response = api.get(f"/companies/{company.pk}", headers={"X-Request-Id": "trace-ops-1"})
    assert response.status_code == 200
    [record] = [r for r in caplog.records if r.name == "axiomatic.access"]
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "trace-ops-1"
    assert line["entity_id"] == str(entity.pk)
    assert line["api_key_id"] == str(api.api_key.pk)
    assert line["route"] == "/api/crm/companies/{companyId}"
    assert (line["method"], line["status"]) == ("GET", 200)
    assert isinstance(line["duration_ms"], float)
    assert line["db_queries"] >= 1


def test_log_format_defaults_to_text_in_debug_and_json_otherwise():
    def formatter(debug: str) -> str:
        env = {k: v for k, v in os.environ.items() if k != "LOG_FORMAT"} | {"DEBUG": debug}
        code = "from django.conf import settings; print(settings.LOG_FORMAT)"
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env | {"DJANGO_SETTINGS_MODULE": "axiomatic.settings"},
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return out.stdout.strip()

    assert formatter("1") == "text"
    assert formatter("0") == "json"
    config = logging_config(log_format="json", level="INFO")
    assert config["formatters"][config["handlers"]["console"]["formatter"]]["()"] == "axiomatic.logging.JsonFormatter"


@pytest.mark.urls("tests.ops_urls")
def test_an_eager_task_logs_with_the_request_id_of_its_request(client, db, json_log_of_tasks):
    succeeded = _sample("axiomatic_celery_tasks_total", task="tests.operations.echo_request_id", outcome="succeeded")
    assert client.get("/api/test-queue-echo", headers={"X-Request-Id": "trace-eager"}).status_code == 200
    assert ECHOED.get(timeout=5) == "trace-eager"
    assert [line["request_id"] for line in json_log_of_tasks()] == ["trace-eager"]
    assert (
        _sample("axiomatic_celery_tasks_total", task="tests.operations.echo_request_id", outcome="succeeded")
        == succeeded + 1
    )


BROKER_URL = os.environ.get("TEST_CELERY_BROKER_URL", "redis://127.0.0.1:6379/7")


@contextlib.contextmanager
def worker_on_own_queue():
    queue_name = f"axiomatic-test-ops-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-{uuid.uuid4().hex[:8]}"
    keys = ("broker_url", "task_always_eager", "task_default_queue", "broker_connection_retry_on_startup")
    saved = {key: celery_app.conf[key] for key in keys}
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    celery_app.conf.update(
        broker_url=BROKER_URL, task_always_eager=False, task_default_queue=queue_name,
        broker_connection_retry_on_startup=False,
    )  # fmt: skip
    try:
        with start_worker(
            celery_app, pool="solo", concurrency=1, perform_ping_check=False, queues=[queue_name], shutdown_timeout=20
        ):
            yield
    finally:
        with contextlib.suppress(Exception), celery_app.connection_for_write() as conn:
            declared = celery_app.amqp.queues[queue_name](conn.default_channel)
            declared.declare()
            declared.delete()
        celery_app._pool = None
        celery_app.amqp._producer_pool = None
        celery_app.conf.update(saved)


@pytest.mark.worker
@pytest.mark.urls("tests.ops_urls")
def test_a_task_queued_during_a_request_runs_on_a_worker_with_that_request_id(client, db, json_log_of_tasks):
    with worker_on_own_queue():
        response = client.get("/api/test-queue-echo", headers={"X-Request-Id": "trace-worker-7"})
        assert response.status_code == 200
        assert ECHOED.get(timeout=30) == "trace-worker-7"
    assert [line["request_id"] for line in json_log_of_tasks()] == ["trace-worker-7"]
    assert current_request_id() is None  # nothing leaks into the test's own context


# --- under gunicorn: recovery without a restart, metrics across processes, graceful shutdown ----


@contextlib.contextmanager
def gunicorn(tmp_path: Path, *, database_port: int, **env_overrides: str):
    db = connection.settings_dict
    user = quote(db["USER"] or "postgres")
    password = f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else ""
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.ops_settings",
        "DATABASE_URL": f"postgres://{user}{password}@127.0.0.1:{database_port}/{db['NAME']}",
        "DEBUG": "0",
        "LOG_FORMAT": "json",
        "WEB_CONCURRENCY": "1",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "DB_CONNECT_TIMEOUT_SECONDS": "2",
        "METRICS_TOKEN": METRICS_TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
        "API_RATE_LIMIT_PER_MINUTE": "100000",
        **env_overrides,
    }
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "axiomatic.wsgi:application"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(f"{base}/livez", timeout=2).ok, timeout=60, message="gunicorn to serve")
        yield SimpleNamespace(url=base, process=process, log=log_path)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _workers(process) -> str:
    return Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().strip()


@pytest.mark.parametrize("pool", ["0", "1"], ids=["persistent", "pool"])
def test_under_gunicorn_a_database_outage_is_503_and_the_service_recovers_without_a_restart(
    transactional_db, entity, user, tmp_path, pool
):
    issued = factories.make_key(entity, user)
    proxy = TcpProxy((connection.settings_dict["HOST"] or "127.0.0.1", int(connection.settings_dict["PORT"] or 5432)))
    proxy.start()
    auth = {"Authorization": f"Bearer {issued.secret}"}
    companies = f"/api/crm/companies?entityId={entity.pk}"
    try:
        with gunicorn(tmp_path, database_port=proxy.port, DB_POOL=pool) as server:
            assert requests.get(server.url + companies, headers=auth, timeout=10).status_code == 200
            workers = _workers(server.process)

            proxy.stop()  # the open connection drops, new ones are refused
            response = requests.get(server.url + companies, headers=auth, timeout=30)
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"] == RETRY_AFTER
            assert "error" in response.json()
            assert requests.get(server.url + "/healthz", timeout=30).status_code == 503
            ready = requests.get(server.url + "/readyz", timeout=30)
            assert (ready.status_code, ready.json()["checks"]["database"]) == (503, "down")
            assert requests.get(server.url + "/livez", timeout=10).status_code == 200

            proxy.start()
            wait_until(
                lambda: requests.get(server.url + companies, headers=auth, timeout=10).status_code == 200,
                timeout=30,
                message="the API to answer again",
            )
            assert requests.get(server.url + "/readyz", timeout=10).status_code == 200
            assert _workers(server.process) == workers  # same worker process: no restart

            scraped = requests.get(server.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
            assert scraped.status_code == 200
            assert 'axiomatic_http_requests_total{method="GET",route="/api/crm/companies",status="503"}' in scraped.text
            assert "axiomatic_database_unavailable_total" in scraped.text
            assert requests.get(server.url + "/metrics", timeout=10).status_code == 404

            response = requests.get(server.url + companies, headers={**auth, "X-Request-Id": "trace-e2e"}, timeout=10)
            assert response.status_code == 200
    finally:
        proxy.stop()
    lines = [json.loads(line) for line in server.log.read_text().splitlines() if line.startswith("{")]
    assert any(line["logger"] == "gunicorn.error" and "Booting worker" in line["message"] for line in lines)
    [access] = [
        line for line in lines if line.get("request_id") == "trace-e2e" and line["logger"] == "axiomatic.access"
    ]
    assert access["route"] == "/api/crm/companies"
    assert access["entity_id"] == str(entity.pk)
    assert access["api_key_id"] == str(issued.api_key.pk)
    assert (access["method"], access["status"]) == ("GET", 200)


def test_under_gunicorn_sigterm_lets_the_request_in_flight_finish(transactional_db, tmp_path):
    port = int(connection.settings_dict["PORT"] or 5432)
    with gunicorn(tmp_path, database_port=port) as server:
        answers: list = []
        thread = threading.Thread(target=lambda: answers.append(requests.get(server.url + "/test-sleep", timeout=30)))
        thread.start()
        time.sleep(0.7)  # the request is in pg_sleep(1.5)
        server.process.send_signal(signal.SIGTERM)
        thread.join(timeout=30)
        assert server.process.wait(timeout=30) == 0
    [answer] = answers
    assert answer.status_code == 200
    assert answer.json() == {"slept": True}
