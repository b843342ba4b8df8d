"""The read replica (axiomatic/replica.py) against a REAL PostgreSQL streaming replica.

The module starts its own hot standby of the test cluster (tests/replica_support.py: a
`pg_basebackup -R` and a second `postgres` on a free port) and tears it down at the end. Data is
committed (transactional tests), so it reaches the replica by streaming replication, as in
production. Queries are counted per alias: the primary ("default") and the replica ("replica").

The tests share one server and pause or stop it: `xdist_group` keeps them on one worker
(`bin/test` distributes with `--dist loadgroup`).
"""

from __future__ import annotations

import os
import time
import uuid

import psycopg
import pytest
from django.conf import settings as django_settings
from django.core.cache import caches
from django.core.signals import request_started
from django.db import connections, reset_queries
from django.http import HttpResponse
from django.test import Client, RequestFactory

from apikeys.services import api_key_revoke
from axiomatic.ops.dbconfig import replica_database
from axiomatic.replica import (
    REPLICA_ALIAS,
    ReplicaPinMiddleware,
    pin_seconds,
    replica_pinned,
    replica_reads,
    replica_skipped,
    replica_verdict_reset,
    request_credential,
)
from axiomatic.services import membership_remove
from crm.models import Company
from tests import factories
from tests.replica_support import Primary, ReplicaUnavailable, StreamingReplica
from tests.rls_support import app_context

# The replica is a mirror of "default" for the test machinery: only the primary is flushed.
pytestmark = [
    pytest.mark.xdist_group("replica"),
    pytest.mark.django_db(transaction=True, databases=["default", REPLICA_ALIAS]),
]


@pytest.fixture(scope="module")
def streaming_replica(django_db_setup, django_db_blocker):
    """A hot standby of the test cluster (the test database, created before the copy, included),
    configured as the `replica` alias as DATABASE_REPLICA_URL would, for this module."""
    primary = connections["default"].settings_dict
    server = StreamingReplica(
        Primary(
            host=primary["HOST"] or "127.0.0.1",
            port=int(primary["PORT"] or 5432),
            user=primary["USER"],
            password=primary["PASSWORD"],
        )
    )
    try:
        server.start()
    except ReplicaUnavailable as exc:
        server.destroy()
        if os.environ.get("REPLICA_TESTS_REQUIRED") == "1":
            pytest.fail(f"streaming replica unavailable: {exc}")
        pytest.skip(f"streaming replica unavailable: {exc}")
    except BaseException:
        server.destroy()
        raise
    target = {
        "NAME": primary["NAME"],  # the test database, copied with the cluster
        "USER": primary["USER"],
        "PASSWORD": primary["PASSWORD"],
        "HOST": "127.0.0.1",
        "PORT": server.port,
    }
    databases = django_settings.DATABASES  # the dict `connections` reads
    databases[REPLICA_ALIAS] = replica_database(target, primary=primary)
    connections.configure_settings(databases)
    try:
        yield server
    finally:
        connections[REPLICA_ALIAS].close()
        del connections[REPLICA_ALIAS]
        del databases[REPLICA_ALIAS]
        replica_verdict_reset()
        server.destroy()


@pytest.fixture
def replica(streaming_replica, transactional_db, settings):
    """The replica, replaying, with pin, lag and retry settings and no skip verdict."""
    settings.REPLICA_PIN_SECONDS = 5
    # The test cluster may be shared (other test workers, other databases on a developer's
    # machine): its WAL can keep replay a few seconds behind. The lag tests set their own limit.
    settings.REPLICA_MAX_LAG_SECONDS = 60
    settings.REPLICA_RETRY_SECONDS = 5
    replica_verdict_reset()
    streaming_replica.resume_replay()
    yield streaming_replica
    streaming_replica.resume_replay()
    replica_verdict_reset()


class _Capture:
    """The statements one connection runs during a block (no connection is opened for it: the
    replica may be down)."""

    def __init__(self, connection):
        self.connection = connection
        self.captured_queries: list[dict] = []

    def __enter__(self):
        self._force = self.connection.force_debug_cursor
        self.connection.force_debug_cursor = True
        self.connection.queries_log.clear()
        request_started.disconnect(reset_queries)  # as CaptureQueriesContext: keep the log across requests
        return self

    def __exit__(self, *exc):
        self.connection.force_debug_cursor = self._force
        request_started.connect(reset_queries)
        self.captured_queries = list(self.connection.queries_log)


class Counted:
    """Queries per alias during a block (the primary's and the replica's)."""

    def __init__(self):
        self.primary = _Capture(connections["default"])
        self.replica = _Capture(connections[REPLICA_ALIAS])

    def __enter__(self):
        self.primary.__enter__()
        self.replica.__enter__()
        return self

    def __exit__(self, *exc):
        self.replica.__exit__(*exc)
        self.primary.__exit__(*exc)

    @property
    def on_primary(self) -> list[str]:
        return _statements(self.primary)

    @property
    def on_replica(self) -> list[str]:
        return _statements(self.replica)


def _forget_pins() -> None:
    """Drop the pins the set-up's writes left (a new key, a new member pin their entity)."""
    backend = caches["default"]
    client = backend._cache.get_client(write=True)
    keys = list(client.scan_iter(match=f"{backend.key_prefix}:*replica-pin:*", count=1000))
    if keys:
        client.delete(*keys)


def _statements(captured: _Capture) -> list[str]:
    """The SQL statements of the requests. Not: the transaction's BEGIN/COMMIT, which Django logs
    and psycopg sends only once a statement runs (an empty transaction costs no round trip), and
    what a new connection runs once (SET ROLE, the type lookups of django.contrib.postgres)."""
    return [
        query["sql"]
        for query in captured.captured_queries
        if query["sql"] not in _TRANSACTION and not query["sql"].startswith(_PER_CONNECTION)
    ]


_PER_CONNECTION = ("SET ROLE ", "SELECT oid, typarray FROM pg_type")


_TRANSACTION = {"BEGIN", "COMMIT", "ROLLBACK"}
TOGGLE = "set_config('app.rls_bypass'"  # tests/rls_support.py's toggles, on the raw connection


def _ids(response, key="companies") -> set[str]:
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()[key]}


@pytest.fixture
def seeded(replica, api, other_entity):
    """Companies in both entities, the key used once (its last-use stamp written), all replayed."""
    mine = [factories.make_company(api.entity, name=f"Mine {n}") for n in range(3)]
    theirs = factories.make_company(other_entity, name="Theirs")
    assert api.get("/companies").status_code == 200  # stamps the key's last use on the primary
    replica.wait_for_replay()
    _forget_pins()
    assert api.get("/companies").status_code == 200  # the replica's connection, made
    return mine, theirs


def test_list_read_costs_the_primary_no_query(api, seeded, tmp_path):
    mine, theirs = seeded
    primary = connections["default"]
    primary.ensure_connection()
    pgconn = primary.connection.pgconn
    trace = tmp_path / "primary.trace"
    with open(trace, "w", encoding="utf-8") as handle:
        # libpq's own trace of the primary's connection: every message this process sends it.
        pgconn.trace(handle.fileno())
        pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            with Counted() as counted:
                response = api.get("/companies")
        finally:
            pgconn.untrace()
    assert _ids(response) == {str(company.pk) for company in mine}
    assert counted.on_primary == []
    sent = [line for line in trace.read_text().splitlines() if line.startswith("F")]
    statements = [line for line in sent if "\tQuery\t" in line or "\tParse\t" in line]
    # Only the test machinery's bypass toggles around the request (tests/rls_support.py): not
    # even a BEGIN or COMMIT of the request's empty transaction reaches the primary.
    assert statements and all(TOGGLE in line for line in statements), "\n".join(sent)
    # The check (lag + entity), the key with its membership, the page with its total.
    assert len(counted.on_replica) <= 3
    assert "pg_is_in_recovery" in counted.on_replica[0]


def test_detail_and_dashboard_read_on_the_replica(api, seeded, other_entity):
    mine, theirs = seeded
    with Counted() as counted:
        detail = api.get(f"/companies/{mine[0].pk}")
        dashboard = api.get("/dashboard")
        foreign = api.get(f"/companies/{theirs.pk}")  # another entity's id: as missing, on the replica too
    assert detail.status_code == 200 and detail.json()["company"]["id"] == str(mine[0].pk)
    assert dashboard.status_code == 200 and dashboard.json()["companies"]["total"] == 3
    assert foreign.status_code == 404
    assert counted.on_primary == []
    assert len(counted.on_replica) >= 6


def test_a_key_of_another_entity_is_told_apart_on_the_replica(seeded, other_api, api):
    """The key lookup's named bypass (a key not in the named entity: 403, not 401) acts on the
    connection that reads: the replica."""
    assert other_api.get("/companies").status_code == 200  # its first use stamps it on the primary
    with Counted() as counted:
        response = other_api.get("/companies", entity_id=api.entity.pk)
    assert response.status_code == 403, response.content
    assert counted.on_primary == [] and any("rls_bypass" in sql for sql in counted.on_replica)


def test_row_level_security_and_app_role_hold_on_the_replica(seeded, api, other_entity):
    mine, theirs = seeded
    request = RequestFactory().get("/", {"entityId": str(api.entity.pk)})
    request.session = {}
    with app_context(), replica_reads(request, entity_id=api.entity.pk) as routed:
        assert routed
        # No ORM entity filter at all: only PostgreSQL's policy stands between these reads and Bob's rows.
        visible = set(Company.objects.values_list("pk", flat=True))
        by_id = Company.objects.filter(pk=theirs.pk).exists()
        with connections[REPLICA_ALIAS].cursor() as cursor:
            cursor.execute("SELECT current_user, pg_is_in_recovery(), current_setting('app.rls_bypass', true)")
            role, in_recovery, bypass = cursor.fetchone()
    assert visible == {company.pk for company in mine}
    assert by_id is False
    assert role == django_settings.DB_APP_ROLE and in_recovery is True and bypass in (None, "")


def test_write_goes_to_the_primary_and_pins_the_writer(replica, api, make_api, seeded, settings):
    colleague = make_api(user=factories.make_member(api.entity))
    assert colleague.get("/companies").status_code == 200
    replica.wait_for_replay()
    _forget_pins()
    replica.pause_replay()
    with Counted() as counted:
        created = api.post("/companies", {"name": "Fresh"})
    assert created.status_code == 201, created.content
    fresh = created.json()["company"]["id"]
    assert counted.on_replica == []
    assert any("INSERT" in sql for sql in counted.on_primary)

    # The writer reads its write at once (pinned to the primary) ...
    with Counted() as counted:
        own = api.get("/companies")
    assert fresh in _ids(own)
    assert counted.on_replica == [] and counted.on_primary
    # ... another caller reads the replica, which has not replayed it yet.
    with Counted() as counted:
        other = colleague.get("/companies")
    assert fresh not in _ids(other)
    assert counted.on_primary == [] and counted.on_replica

    replica.resume_replay()
    replica.wait_for_replay()
    assert fresh in _ids(colleague.get("/companies"))


def test_the_pin_follows_writes_not_methods(replica, entity, rf):
    """A GET that wrote pins its caller; an OPTIONS or a refused POST does not."""

    def pinned_after(method: str, respond) -> bool:
        _forget_pins()
        request = getattr(rf, method)("/", headers={"Authorization": f"Bearer ak_{method}"})
        request.session = {}
        ReplicaPinMiddleware(respond)(request)
        return replica_pinned(credential=request_credential(request), entity_id=uuid.uuid4())

    def writes(request):
        factories.make_company(entity, name="Written by a GET")
        return HttpResponse("ok")

    assert pinned_after("get", writes)
    assert not pinned_after("get", lambda request: HttpResponse("ok"))
    assert not pinned_after("options", lambda request: HttpResponse("ok"))
    assert not pinned_after("post", lambda request: HttpResponse("no", status=400))
    assert pinned_after("post", lambda request: HttpResponse("ok", status=201))
    # The scheme's spelling does not make another credential.
    lower = rf.get("/", headers={"Authorization": "bearer ak_same"})
    upper = rf.get("/", headers={"Authorization": "Bearer ak_same"})
    assert request_credential(lower) == request_credential(upper)


def test_a_pin_lasts_at_least_the_lag_a_replica_may_have(settings, rf):
    settings.REPLICA_PIN_SECONDS = 5
    settings.REPLICA_MAX_LAG_SECONDS = 2
    assert pin_seconds() == 5
    settings.REPLICA_MAX_LAG_SECONDS = 30
    assert pin_seconds() == 31
    bearer = rf.get("/", headers={"Authorization": "Bearer ak_secret"})
    assert request_credential(bearer).startswith("key:") and "ak_secret" not in request_credential(bearer)


def test_a_lagging_replica_is_skipped_then_used_again(replica, api, seeded, settings):
    mine, theirs = seeded
    settings.REPLICA_MAX_LAG_SECONDS = 0.5
    replica.pause_replay()
    late = factories.make_company(api.entity, name="Late")  # received by the replica, not replayed
    time.sleep(1.0)
    with Counted() as counted:
        response = api.get("/companies")
    assert str(late.pk) in _ids(response)  # served by the primary
    assert "lags" in replica_skipped()
    assert len(counted.on_replica) == 1  # the check alone
    with Counted() as counted:
        assert api.get("/companies").status_code == 200
    assert counted.on_replica == []  # the verdict is remembered: no second try

    replica.resume_replay()
    replica.wait_for_replay()
    replica_verdict_reset()  # as REPLICA_RETRY_SECONDS passing would
    settings.REPLICA_MAX_LAG_SECONDS = 60  # as the other tests (a shared cluster's replay)
    with Counted() as counted:
        response = api.get("/companies")
    assert str(late.pk) in _ids(response)
    assert counted.on_primary == [] and counted.on_replica


def test_a_replica_that_is_down_is_skipped(replica, api, seeded):
    mine, theirs = seeded
    assert api.get("/companies").status_code == 200  # a live connection to the replica, then the outage
    replica.stop()
    try:
        with Counted() as counted:
            response = api.get("/companies")
        assert _ids(response) == {str(company.pk) for company in mine}  # from the primary, no error
        assert counted.on_primary
        assert "unreachable" in replica_skipped() or "failed" in replica_skipped()
        with Counted() as counted:
            assert api.get(f"/companies/{mine[0].pk}").status_code == 200
        assert counted.on_replica == []
    finally:
        replica.restart()
    replica.wait_for_replay()
    replica_verdict_reset()
    with Counted() as counted:
        assert api.get("/companies").status_code == 200
    assert counted.on_primary == [] and counted.on_replica


def test_a_revoked_key_is_refused_on_the_next_request_although_the_replica_lags(replica, make_api, seeded):
    reader = make_api(user=factories.make_member(seeded[0][0].entity))
    assert reader.get("/companies").status_code == 200  # its first use stamps it on the primary
    replica.wait_for_replay()
    _forget_pins()
    with Counted() as counted:
        assert reader.get("/companies").status_code == 200
    assert counted.on_replica and not counted.on_primary
    replica.pause_replay()
    api_key_revoke(reader.api_key)
    assert replica_pinned(credential=None, entity_id=reader.entity.pk)
    with Counted() as counted:
        assert reader.get("/companies").status_code == 401
    assert counted.on_primary and not counted.on_replica


def test_a_removed_member_is_refused_on_the_next_request_although_the_replica_lags(replica, make_api, seeded):
    entity = seeded[0][0].entity
    member = factories.make_member(entity)
    reader = make_api(user=member)
    assert reader.get("/companies").status_code == 200  # its first use stamps it on the primary
    replica.wait_for_replay()
    _forget_pins()
    with Counted() as counted:
        assert reader.get("/companies").status_code == 200
    assert counted.on_replica and not counted.on_primary
    replica.pause_replay()
    membership_remove(entity=entity, user=member)
    with Counted() as counted:
        assert reader.get("/companies").status_code == 401
    assert counted.on_primary and not counted.on_replica


def test_a_deactivated_users_key_is_refused_on_the_next_request_although_the_replica_lags(replica, make_api, seeded):
    member = factories.make_member(seeded[0][0].entity)
    reader = make_api(user=member)
    assert reader.get("/companies").status_code == 200  # its first use stamps it on the primary
    replica.wait_for_replay()
    _forget_pins()
    replica.pause_replay()
    member.is_active = False
    member.save(update_fields=["is_active"])
    with Counted() as counted:
        assert reader.get("/companies").status_code == 401
    assert counted.on_primary and not counted.on_replica


def test_writes_are_never_routed_to_the_replica(replica, api, seeded):
    mine, theirs = seeded
    with Counted() as counted:
        created = api.post("/companies", {"name": "New"})
        changed = api.patch(f"/companies/{mine[0].pk}", {"name": "Renamed"})
    assert created.status_code == 201 and changed.status_code == 200
    assert counted.on_replica == []


def test_dashboard_and_board_pages_read_on_the_replica(replica, user, entity):
    factories.make_lead(entity, title="On the board")
    client = Client()
    client.force_login(user)
    replica.wait_for_replay()
    _forget_pins()
    for path in ("/crm/dashboard", "/crm/board"):
        with Counted() as counted:
            response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        assert counted.on_replica, path
        assert "pg_is_in_recovery" in counted.on_replica[0]
    assert b"On the board" in client.get("/crm/board").content
    # A write through the API with the session pins the user: the pages read the primary next.
    stage = factories.stage(entity, "new")
    created = client.post(
        f"/api/crm/leads?entityId={entity.pk}",
        data={"title": "Just made", "stageId": str(stage.pk)},
        content_type="application/json",
    )
    assert created.status_code == 201, created.content
    with Counted() as counted:
        assert b"Just made" in client.get("/crm/board").content
    assert counted.on_replica == []
