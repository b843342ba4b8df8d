"""`bin/bench [SCALE]`: latency of the API and the admin at SCALE companies, against goals.

What it does, in order:

1. Data set: SCALE companies, SCALE/2 contacts (each with a primary membership), SCALE/2 leads and
   SCALE activities in one "large" entity, and a second entity of 20 companies, in the database
   BENCH_DATABASE_URL (created if missing, migrated every run). A marker table, `bench_dataset`,
   remembers each scale's entities and how long seeding took, so later runs reuse the data
   (`--reseed` makes a new pair). Seeding is `manage.py seed_demo` (PostgreSQL COPY); its wall
   time and peak RSS are recorded, then the tables are vacuumed and analysed.
2. The app as in production: gunicorn with gunicorn.conf.py, `axiomatic.wsgi:application`, its
   workers (gunicorn.conf.py's measured choice; `--workers`/`--threads` to try others), DEBUG=0
   with a generated SECRET_KEY and FIELD_ENCRYPTION_KEYS, Redis (database 14 by default, keys
   under a per-run prefix). The only difference is the settings module
   bench/settings.py, which adds the `X-Bench-Queries` response header (SQL statements per
   request). The API rate limit is lifted so the load phase is not answered 429.
3. One client, one request at a time: every request below, warmed up, then `--samples` rounds
   of one sample of each request in turn (a row stops early once `--budget` seconds are spent on
   it), p50 and p99 of the client-side time. Interleaving puts passing load on every row alike.
   The trivial endpoint (`/livez`: no database) and the equivalent plain SQL (psycopg, as the
   app's database role, with the entity set, client-side binding as Django does) are measured in
   the same run; `ratio` = p50 / (trivial p50 + SQL p50). Then the merges (`bench/merges.py`):
   each sample merges a pair made for it in the large entity (two contacts with 50 related rows
   each; a company holding 10,000 memberships into another) through the API with a write key,
   and everything the samples made is deleted afterwards.
4. Load: companies page 1 from 8 concurrent clients for `--duration` seconds (wrk when installed,
   else a Python thread pool), then an open-loop Python generator at a fixed 150 requests/s
   whose latencies count from each request's scheduled start (no coordinated omission).
5. A Markdown report (`--output`, default docs/performance.md): machine, PostgreSQL, scale, date,
   seeding figures, and the tables with the goals side by side, each met or not met.

Numbers are only as quiet as the machine: the report records the load average before and after.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import http.client
import io
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

import psycopg
import requests

from bench import custom_fields as bench_custom_fields
from bench import merges
from bench.bulk import drop_queue

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/ax_bench_data"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
SMALL_COMPANIES = 20
MEMBERS = 8  # users of the large entity: owners and assignees of the seeded rows
PAGE_SIZE = 50  # the API's default page size
ADMIN_PAGE_SIZE = 100  # Django admin's list_per_page
WORKERS = 3  # warm-up concurrency; the app's own worker count is gunicorn.conf.py's (or --workers)
COMMON_Q = "cme"  # 3 letters of "Acme", one of the seeded company words
RANDOM_TERMS = 50  # substrings drawn for the `q_random` row (a fixed seed: the same terms every run)
QUERIES_HEADER = "X-Bench-Queries"
MARKER_TABLE = "bench_dataset"


class BenchError(Exception):
    pass


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- statistics ----------------------------------------------------------------------------------


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (p99 of fewer than 100 samples is their maximum)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def fmt_ms(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


# --- goals ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Goal:
    """`kind`: "ratio" (p50 ≤ value × (trivial + SQL)), "ms" (p50 ≤ value), "relative" (p50 ≤
    value × p50 of `other`), "rps" (throughput ≥ value), "p99" (p99 ≤ value), or "" (reference)."""

    kind: str = ""
    value: float = 0
    other: str = ""
    text: str = ""
    p99: float = 0  # with kind "ms": p99 must also be at most this

    def describe(self, labels: dict[str, str]) -> str:
        if self.text:
            return self.text
        if self.kind == "ratio":
            return f"p50 ≤ {self.value:g} × (trivial + SQL)"
        if self.kind == "ms":
            return f"p50 ≤ {self.value:g} ms" + (f", p99 ≤ {self.p99:g} ms" if self.p99 else "")
        if self.kind == "relative":
            return f"p50 ≤ {self.value:g} × {labels.get(self.other, self.other)}"
        if self.kind == "rps":
            return f"≥ {self.value:g} req/s"
        if self.kind == "p99":
            return f"p99 ≤ {self.value:g} ms"
        return "reference"


# --- the requests --------------------------------------------------------------------------------


@dataclass
class Spec:
    key: str
    label: str
    path: str = ""  # with its query string; "" until known (cursor rows)
    goal: Goal = field(default_factory=Goal)
    sql: str | None = None  # the equivalent plain SQL (%(entity)s and other named parameters)
    sql_params: dict = field(default_factory=dict)
    entity: str = "large"  # "large", "small" or "" (admin, probes)
    admin: bool = False
    note: str = ""


@dataclass
class Result:
    spec: Spec
    samples: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    queries: list[int] = field(default_factory=list)
    sql_ms: float | None = None
    skipped: str = ""  # why it was not measured (n/a)

    @property
    def p50(self) -> float | None:
        return percentile(self.samples, 50) if self.samples else None

    @property
    def p99(self) -> float | None:
        return percentile(self.samples, 99) if self.samples else None

    @property
    def query_count(self) -> str:
        if not self.queries:
            return "n/a"
        low, high = min(self.queries), max(self.queries)
        return str(low) if low == high else f"{low}–{high}"


# Row keys the report always has (tests/test_bench.py checks them).
API_ROWS = [
    "trivial",
    "healthz",
    "companies_p1",
    "companies_customer_p1",
    "contacts_p1",
    "leads_p1",
    "activities_p1",
    "companies_p2000",
    "companies_cursor",
    "contacts_cursor",
    "leads_cursor",
    "activities_cursor",
    "companies_q_selective",
    "companies_q_common",
    "q_random",
    "pipeline_stages",
    "dashboard",
    "small_companies_p1",
    "large_vs_small",
    "admin_company",
    "admin_company_search",
    "admin_company_p5000",
    "admin_activity",
    "admin_lead",
    "admin_contact",
    "contacts_duplicates_p1",
    "companies_duplicates_p1",
    "merge_contacts",
    "merge_company",
]
LOAD_ROWS = ["load_closed", "load_fixed"]

_LISTS = {
    # key: (path, table, ORDER BY, keyset condition after (%(k1)s, %(id)s), select list)
    "companies": (
        "/api/crm/companies",
        "crm_company",
        "name, id",
        "(name, id) > (%(k1)s, %(id)s)",
        "t.*",
    ),
    "contacts": (
        "/api/crm/contacts",
        "crm_contact",
        "last_name, first_name, id",
        "(last_name, first_name, id) > (%(k1)s, %(k2)s, %(id)s)",
        "t.*, (SELECT m.company_id FROM crm_companymembership m WHERE m.contact_id = t.id AND m.is_primary LIMIT 1)",
    ),
    "leads": (
        "/api/crm/leads",
        "crm_lead",
        "updated_at DESC, id",
        "(updated_at < %(k1)s OR (updated_at = %(k1)s AND id > %(id)s))",
        "t.*",
    ),
    "activities": (
        "/api/crm/activities",
        "crm_activity",
        "occurred_at DESC, id",
        "(occurred_at < %(k1)s OR (occurred_at = %(k1)s AND id > %(id)s))",
        "t.*",
    ),
}


def page_sql(kind: str, *, where: str = "", offset: int = 0, keyset: bool = False) -> str:
    _, table, order, after, select = _LISTS[kind]
    conditions = ["t.entity_id = %(entity)s", *([where] if where else []), *([after] if keyset else [])]
    sql = f"SELECT {select} FROM {table} t WHERE {' AND '.join(conditions)} ORDER BY {order} LIMIT {PAGE_SIZE + 1}"
    return sql + (f" OFFSET {offset}" if offset else "")


def build_specs(scale: int, *, selective_q: str, cursor_depth: int) -> list[Spec]:
    ratio = Goal("ratio", 1.5)
    deep_page = 2000
    specs = [
        Spec("trivial", "trivial endpoint `GET /livez` (no database)", "/livez", entity=""),
        Spec("healthz", "`GET /healthz` (one `SELECT 1`)", "/healthz", entity=""),
        Spec(
            "companies_p1",
            "companies page 1",
            "/api/crm/companies?entityId={large}",
            ratio,
            page_sql("companies"),
        ),
        Spec(
            "companies_customer_p1",
            "companies `role=customer` page 1",
            "/api/crm/companies?entityId={large}&role=customer",
            ratio,
            page_sql("companies", where="t.role = 'customer'"),
        ),
        Spec(
            "contacts_p1",
            "contacts page 1",
            "/api/crm/contacts?entityId={large}",
            Goal("ratio", 1.5, text="p50 ≤ 1.5 × (trivial + SQL) (as companies)"),
            page_sql("contacts"),
        ),
        Spec(
            "leads_p1",
            "leads page 1",
            "/api/crm/leads?entityId={large}",
            Goal("ratio", 1.5, text="p50 ≤ 1.5 × (trivial + SQL) (as companies)"),
            page_sql("leads"),
        ),
        Spec(
            "activities_p1",
            "activities page 1",
            "/api/crm/activities?entityId={large}",
            Goal("ratio", 1.5, text="p50 ≤ 1.5 × (trivial + SQL) (as companies)"),
            page_sql("activities"),
        ),
        Spec(
            "companies_p2000",
            f"companies page {deep_page} (OFFSET {(deep_page - 1) * PAGE_SIZE:,})",
            f"/api/crm/companies?entityId={{large}}&page={deep_page}",
            Goal("ms", 200),
            page_sql("companies", offset=(deep_page - 1) * PAGE_SIZE),
        ),
    ]
    for kind in ("companies", "contacts", "leads", "activities"):
        specs.append(
            Spec(
                f"{kind}_cursor",
                f"{kind} by `nextCursor` at depth {cursor_depth:,} rows",
                goal=Goal("relative", 1.3, f"{kind}_p1"),
                sql=page_sql(kind, keyset=True),
            )
        )
    specs += [
        Spec(
            "companies_q_selective",
            f"companies `q={selective_q}` (6 letters of a real name)",
            f"/api/crm/companies?entityId={{large}}&q={selective_q}",
            Goal("ms", 30),
            page_sql("companies", where="UPPER(t.name::text) LIKE UPPER(%(q)s)"),
            {"q": f"%{selective_q}%"},
        ),
        Spec(
            "companies_q_common",
            f"companies `q={COMMON_Q}` (3 letters, common)",
            f"/api/crm/companies?entityId={{large}}&q={COMMON_Q}",
            Goal("ms", 100),
            page_sql("companies", where="UPPER(t.name::text) LIKE UPPER(%(q)s)"),
            {"q": f"%{COMMON_Q}%"},
        ),
        Spec(
            "q_random",
            f"`q` = a random 6-character substring of a real company or contact name ({RANDOM_TERMS} drawn)",
            goal=Goal("ms", 50, p99=150),
            note="companies or contacts page 1, one sample per term",
        ),
        Spec(
            "pipeline_stages",
            "`GET /pipeline-stages` (with lead counts and sums)",
            "/api/crm/pipeline-stages?entityId={large}",
            Goal("ms", 50),
            "SELECT * FROM crm_pipelinestage t WHERE t.entity_id = %(entity)s ORDER BY sort_order, id",
        ),
        Spec("dashboard", "`GET /dashboard`", "/api/crm/dashboard?entityId={large}", Goal("ms", 50)),
        Spec(
            "small_companies_p1",
            f"companies page 1, {SMALL_COMPANIES}-company entity",
            "/api/crm/companies?entityId={small}",
            ratio,
            page_sql("companies"),
            entity="small",
        ),
        Spec(
            "large_vs_small",
            f"companies page 1, {scale:,}-company entity vs {SMALL_COMPANIES}-company entity",
            goal=Goal("relative", 1.2, "small_companies_p1"),
            note="p50 and p99 of the large entity's page 1; ratio = large p50 / small p50",
        ),
        Spec("admin_company", "admin `/admin/crm/company/`", "/admin/crm/company/", Goal("ms", 300), admin=True),
        Spec(
            "admin_company_search",
            "admin `/admin/crm/company/?q=cme`",
            "/admin/crm/company/?q=cme",
            Goal("ms", 300),
            admin=True,
        ),
        Spec(
            "admin_company_p5000",
            "admin `/admin/crm/company/?p=5000`",
            "/admin/crm/company/?p=5000",
            Goal("ms", 500),
            admin=True,
        ),
        Spec("admin_activity", "admin `/admin/crm/activity/`", "/admin/crm/activity/", Goal("ms", 300), admin=True),
        Spec("admin_lead", "admin `/admin/crm/lead/`", "/admin/crm/lead/", Goal("ms", 300), admin=True),
        Spec("admin_contact", "admin `/admin/crm/contact/`", "/admin/crm/contact/", Goal("ms", 300), admin=True),
        Spec(
            "contacts_duplicates_p1",
            "`GET /contacts/duplicates` page 1",
            "/api/crm/contacts/duplicates?entityId={large}",
            Goal("ms", 300),
            "SELECT * FROM crm_contactduplicate t WHERE t.entity_id = %(entity)s ORDER BY score DESC, id LIMIT 51",
        ),
        Spec(
            "companies_duplicates_p1",
            "`GET /companies/duplicates` page 1",
            "/api/crm/companies/duplicates?entityId={large}",
            Goal("ms", 300),
            "SELECT * FROM crm_companyduplicate t WHERE t.entity_id = %(entity)s ORDER BY score DESC, id LIMIT 51",
        ),
        Spec(
            "merge_contacts",
            "`POST /contacts/{id}/merge`, two contacts with 50 related rows each",
            goal=Goal("ms", 100),
            note="each sample merges a pair made for it (20 leads, 25 activities, 5 memberships each)",
        ),
        Spec(
            "merge_company",
            f"`POST /companies/{{id}}/merge`, {min(merges.MEMBERSHIPS, scale // 2):,} memberships moved",
            goal=Goal("ms", 3000),
            note="each sample merges a company holding that many memberships into another",
        ),
    ]
    assert [spec.key for spec in specs] == API_ROWS
    for spec in specs:
        spec.entity = "" if (spec.admin or spec.key in ("trivial", "healthz")) else spec.entity
    return specs


# --- HTTP ----------------------------------------------------------------------------------------


class Http:
    """One TCP connection per request, as gunicorn's sync workers close each one anyway."""

    def __init__(self, port: int, api_key: str = "") -> None:
        self.port = port
        self.api_key = api_key

    def get(self, path: str, *, key: str | None = None) -> tuple[int, float, int | None, bytes]:
        headers = {"Accept": "application/json"}
        token = self.api_key if key is None else key
        if token and path.startswith("/api/"):
            headers["Authorization"] = f"Bearer {token}"
        started = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        elapsed = (time.perf_counter() - started) * 1000
        queries = response.getheader(QUERIES_HEADER)
        return response.status, elapsed, int(queries) if queries else None, body

    def post(self, path: str, body: dict, *, key: str) -> tuple[int, float, int | None]:
        headers = {"Accept": "application/json", "Content-Type": "application/json", "Authorization": f"Bearer {key}"}
        payload = json.dumps(body).encode()
        started = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            connection.request("POST", path, body=payload, headers=headers)
            response = connection.getresponse()
            response.read()
        finally:
            connection.close()
        elapsed = (time.perf_counter() - started) * 1000
        queries = response.getheader(QUERIES_HEADER)
        return response.status, elapsed, int(queries) if queries else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the database ----------------------------------------------------------------------------


def connect(url: str, **kwargs) -> psycopg.Connection:
    return psycopg.connect(url, connect_timeout=5, **kwargs)


def ensure_database(url: str) -> None:
    try:
        connect(url).close()
        return
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    with connect(maintenance, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    log(f"created database {name}")


def drop_database(url: str) -> None:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    with connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class DataSet:
    scale: int
    large: str
    small: str
    seeded_at: dt.datetime
    seed_seconds: float
    seed_rss_mb: float
    vacuum_seconds: float
    seed_cpu_seconds: float | None = None  # the seeding process's own CPU (user + system)
    seed_load: str | None = None  # load average when seeding ended: how contended the machine was
    reused: bool = False
    counts: dict = field(default_factory=dict)


def _marker_table(conn) -> None:
    conn.execute(
        f"""CREATE TABLE IF NOT EXISTS {MARKER_TABLE} (
            scale integer PRIMARY KEY,
            large_entity uuid NOT NULL,
            small_entity uuid NOT NULL,
            seeded_at timestamptz NOT NULL,
            seed_seconds double precision NOT NULL,
            seed_rss_mb double precision NOT NULL,
            vacuum_seconds double precision NOT NULL
        )"""
    )
    conn.execute(f"ALTER TABLE {MARKER_TABLE} ADD COLUMN IF NOT EXISTS seed_cpu_seconds double precision")
    conn.execute(f"ALTER TABLE {MARKER_TABLE} ADD COLUMN IF NOT EXISTS seed_load text")


def find_data_set(url: str, scale: int) -> DataSet | None:
    with connect(url, autocommit=True) as conn:
        _marker_table(conn)
        row = conn.execute(
            "SELECT large_entity, small_entity, seeded_at, seed_seconds, seed_rss_mb, vacuum_seconds, "
            f"seed_cpu_seconds, seed_load FROM {MARKER_TABLE} WHERE scale = %s",
            [scale],
        ).fetchone()
        if row is None:
            return None
        large, small = str(row[0]), str(row[1])
        found = conn.execute("SELECT count(*) FROM axiomatic_entity WHERE id IN (%s, %s)", [large, small]).fetchone()
        companies = conn.execute("SELECT count(*) FROM crm_company WHERE entity_id = %s", [large]).fetchone()[0]
        if found[0] != 2 or companies != scale:
            log(f"marker for scale {scale} is stale (entities {found[0]}/2, {companies} companies): reseeding")
            return None
        return DataSet(scale, large, small, *row[2:], reused=True)


def row_counts(url: str, entity: str) -> dict:
    counts = {}
    with connect(url, autocommit=True) as conn:
        for table in ("crm_company", "crm_contact", "crm_companymembership", "crm_lead", "crm_activity"):
            counts[table] = conn.execute(f"SELECT count(*) FROM {table} WHERE entity_id = %s", [entity]).fetchone()[0]
    return counts


# --- the app's commands --------------------------------------------------------------------------


def django_setup(env: dict) -> None:
    """This process becomes an app process (the run's settings) for the short operator commands."""
    os.environ.update(env)
    import django

    django.setup()
    from axiomatic.ops.database import COMMAND, set_process_role

    set_process_role(COMMAND)  # no web statement timeout: migrate may build an index for minutes


def command(*argv: str) -> dict:
    """`manage.py ...` in this process; the operator commands print one JSON object."""
    from django.core.management import call_command
    from django.core.management.base import CommandError

    out = io.StringIO()
    try:
        call_command(*argv, stdout=out)
    except CommandError as exc:
        raise BenchError(f"manage.py {' '.join(argv)}: {exc}") from exc
    lines = [line for line in out.getvalue().splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def seed(env: dict, url: str, scale: int, jobs: int) -> DataSet:
    """The large entity through `manage.py seed_demo` in a process of its own (its wall time and
    peak RSS are the seeding figures), the small one in this process."""
    half = scale // 2
    large_id = command("create_entity", f"Bench large {scale}", "--owner-email", f"bench-owner-{scale}@example.com")
    small_id = command("create_entity", f"Bench small {scale}", "--owner-email", f"bench-small-{scale}@example.com")
    large_id, small_id = large_id["entityId"], small_id["entityId"]
    argv = [sys.executable, "manage.py", "seed_demo", "--entity", large_id, "--members", str(MEMBERS)]
    argv += ["--companies", str(scale), "--contacts", str(half), "--leads", str(half), "--activities", str(scale)]
    argv += ["--jobs", str(jobs), "--verbosity", "2"]
    log(f"seeding {scale:,} companies, {half:,} contacts and leads, {scale:,} activities …")
    with tempfile.TemporaryFile(mode="w+") as stdout:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=stdout)
        small = ("--companies", str(SMALL_COMPANIES), "--contacts", "10", "--leads", "10", "--activities", "20")
        command("seed_demo", "--entity", small_id, "--members", "2", *small)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS (ru_maxrss, KiB on Linux)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        output = stdout.read()
    if proc.returncode:
        raise BenchError(f"seed_demo failed (exit {proc.returncode})")
    rss_mb = usage.ru_maxrss / 1024
    cpu_seconds = usage.ru_utime + usage.ru_stime
    seed_load = load_average()
    log(f"seeded in {seconds:.1f}s (its own CPU {cpu_seconds:.0f}s, load {seed_load}), peak RSS {rss_mb:.0f} MB")
    log(output.strip())
    started = time.perf_counter()
    with connect(url, autocommit=True) as conn:
        conn.execute(
            "VACUUM (ANALYZE) crm_company, crm_contact, crm_companymembership, crm_lead, crm_activity, "
            "axiomatic_entitycounter"
            if _table_exists(conn, "axiomatic_entitycounter")
            else "VACUUM (ANALYZE) crm_company, crm_contact, crm_companymembership, crm_lead, crm_activity"
        )
    vacuum_seconds = time.perf_counter() - started
    log(f"VACUUM (ANALYZE) in {vacuum_seconds:.1f}s")
    data = DataSet(
        scale, large_id, small_id, dt.datetime.now(dt.UTC), seconds, rss_mb, vacuum_seconds, cpu_seconds, seed_load
    )
    with connect(url, autocommit=True) as conn:
        _marker_table(conn)
        conn.execute(
            f"INSERT INTO {MARKER_TABLE} (scale, large_entity, small_entity, seeded_at, seed_seconds, seed_rss_mb, "
            "vacuum_seconds, seed_cpu_seconds, seed_load) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (scale) DO UPDATE SET large_entity = EXCLUDED.large_entity, "
            "small_entity = EXCLUDED.small_entity, seeded_at = EXCLUDED.seeded_at, "
            "seed_seconds = EXCLUDED.seed_seconds, seed_rss_mb = EXCLUDED.seed_rss_mb, "
            "vacuum_seconds = EXCLUDED.vacuum_seconds, seed_cpu_seconds = EXCLUDED.seed_cpu_seconds, "
            "seed_load = EXCLUDED.seed_load",
            [scale, large_id, small_id, data.seeded_at, seconds, rss_mb, vacuum_seconds, cpu_seconds, seed_load],
        )
    return data


def _table_exists(conn, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", [table]).fetchone()[0]


# --- plain SQL -----------------------------------------------------------------------------------


class PlainSql:
    """The equivalent SQL timed through psycopg: the app's role and entity setting, client-side
    parameter binding (Django's default with psycopg 3), rows fetched."""

    def __init__(self, url: str, app_role: str) -> None:
        self.conn = connect(url, cursor_factory=psycopg.ClientCursor)
        self.role = ""
        if app_role:
            exists = self.conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [app_role]).fetchone()
            if exists:
                self.conn.execute(f'SET ROLE "{app_role}"')
                self.role = app_role
        self.conn.commit()

    def time(self, sql: str, params: dict, entity: str, samples: int) -> float:
        timings = []
        for _ in range(samples + 2):
            with self.conn.cursor() as cursor:
                cursor.execute("SELECT set_config('app.entity_id', %s, true)", [entity])
                started = time.perf_counter()
                cursor.execute(sql, {"entity": entity, **params})
                cursor.fetchall()
                timings.append((time.perf_counter() - started) * 1000)
            self.conn.rollback()
        return percentile(timings[2:], 50)

    def one(self, sql: str, params: list) -> tuple | None:
        with self.conn.cursor() as cursor:
            cursor.execute("SELECT set_config('app.rls_bypass', 'on', true)")
            cursor.execute(sql, params)
            row = cursor.fetchone()
        self.conn.rollback()
        return row

    def close(self) -> None:
        self.conn.close()


# --- measuring -----------------------------------------------------------------------------------


Getter = Callable[[], tuple[int, float, int | None]]


def random_terms(sql: PlainSql, entity: str, count: int, *, seed: int = 27) -> list[str]:
    """`count` API paths: companies (or contacts) page 1 with `q` = a random 6-character substring
    of a random real company name (or contact full name), half each, whatever their frequency.
    A row is drawn as the first after a random id (uniform over the rows); the seed is fixed, so
    every run at a scale asks the same terms."""
    import random
    import uuid

    rng = random.Random(seed)
    sources = (
        ("/api/crm/companies", "name", "crm_company"),
        ("/api/crm/contacts", "first_name || ' ' || last_name", "crm_contact"),
    )
    paths = []
    for n in range(count):
        path, text, table = sources[n % 2]
        after = str(uuid.UUID(int=rng.getrandbits(128)))
        query = (
            f"SELECT {text} FROM {table} WHERE entity_id = %s AND id >= %s AND length({text}) >= 6 ORDER BY id LIMIT 1"
        )
        row = sql.one(query, [entity, after]) or sql.one(query, [entity, str(uuid.UUID(int=0))])
        name = row[0] if row else "zzzzzz"
        start = rng.randrange(0, len(name) - 5)
        paths.append(f"{path}?{urlencode({'entityId': entity, 'q': name[start : start + 6]})}")
    return paths


def measure_interleaved(rows: list[tuple[Result, Getter, int]], *, budget: float) -> None:
    """Each row's samples, one sample of every row in turn (after two warm-ups each): a burst of
    load from elsewhere on the machine lands on all rows alike, so the ratios between rows (a
    cursor page against page 1, the large entity against the small one) compare like with like.
    A row stops early once it has 5 samples and has used `budget` seconds."""
    for _, get, _ in rows:
        for _ in range(2):  # warm-up: connections, caches, the worker's first use of this view
            get()
    spent = [0.0] * len(rows)
    for n in range(max((samples for _, _, samples in rows), default=0)):
        for index, (result, get, samples) in enumerate(rows):
            if n >= samples or (n >= 5 and spent[index] > budget):
                continue
            started = time.perf_counter()
            status, ms, queries = get()
            spent[index] += time.perf_counter() - started
            result.samples.append(ms)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if queries is not None:
                result.queries.append(queries)


def follow_cursor(http_client: Http, path: str, depth: int) -> tuple[str | None, int, str]:
    """Walk `nextCursor` from page 1 until `depth` rows are behind; the path of that page."""
    status, _, _, body = http_client.get(path)
    if status != 200:
        return None, 0, f"page 1 answered {status}"
    payload = json.loads(body)
    if "nextCursor" not in payload:
        return None, 0, "the API returns no nextCursor"
    behind, current = 0, path
    while behind < depth:
        cursor = payload.get("nextCursor")
        if not cursor:
            break
        rows = next((len(v) for v in payload.values() if isinstance(v, list)), 0)
        behind += rows
        parts = urlsplit(path)
        query = f"{parts.query}&{urlencode({'cursor': cursor})}" if parts.query else urlencode({"cursor": cursor})
        current = urlunsplit(parts._replace(query=query))
        status, _, _, body = http_client.get(current)
        if status != 200:
            return None, behind, f"a cursor page answered {status}"
        payload = json.loads(body)
    return current, behind, ""


def admin_session(port: int, email: str, password: str) -> requests.Session:
    """A signed-in browser session (the app's sign-in page; the admin shares its session)."""
    session = requests.Session()
    login = f"http://127.0.0.1:{port}/accounts/login/"
    response = session.get(login, timeout=60)
    token = session.cookies.get("csrftoken")
    if not token:
        found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', response.text)
        token = found.group(1) if found else ""
    response = session.post(
        login,
        data={"csrfmiddlewaretoken": token, "username": email, "password": password, "next": "/admin/"},
        headers={"Referer": login},
        timeout=60,
        allow_redirects=False,
    )
    if response.status_code != 302:
        raise BenchError(f"sign-in failed ({response.status_code})")
    return session


# --- load ----------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    generator: str
    seconds: float
    requests: int
    throughput: float
    p50: float | None
    p99: float | None
    errors: int
    target_rate: float | None = None
    dropped: int = 0  # fixed rate: requests not sent because the server fell too far behind
    cpu_ms: float | None = None  # CPU (user + system) of the web workers per request of this phase


def workers_cpu_seconds(master_pid: int) -> float | None:
    """User + system CPU of gunicorn's workers so far: the live workers' own, plus what the master
    collected from workers that exited (recycled by max_requests). Linux /proc only."""
    ticks = os.sysconf("SC_CLK_TCK")

    def stat(pid: int) -> list[str]:
        text = Path(f"/proc/{pid}/stat").read_text()
        return text[text.rindex(")") + 2 :].split()  # fields from the state on (field 3)

    try:
        master = stat(master_pid)
        total = int(master[13]) + int(master[14])  # cutime, cstime: exited workers
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    fields = stat(int(entry.name))
                    if int(fields[1]) == master_pid:  # ppid
                        total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / ticks
    except (OSError, IndexError, ValueError):
        return None


def with_cpu(master_pid: int, phase: Callable[[], LoadResult]) -> LoadResult:
    """Run a load phase and note the web workers' CPU milliseconds per request it cost."""
    before = workers_cpu_seconds(master_pid)
    result = phase()
    after = workers_cpu_seconds(master_pid)
    if before is not None and after is not None and result.requests:
        result.cpu_ms = (after - before) * 1000 / result.requests
    return result


def _wrk_ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def closed_loop(port: int, path: str, key: str, *, clients: int, seconds: float) -> LoadResult:
    """`clients` connections each sending the next request when the last one is answered."""
    wrk = shutil.which("wrk")
    if wrk:
        proc = subprocess.run(
            [wrk, "-t2", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "10s"]
            + ["-H", f"Authorization: Bearer {key}", f"http://127.0.0.1:{port}{path}"],
            capture_output=True,
            text=True,
            check=False,
        )
        out = proc.stdout
        rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
        total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
        p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
        p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        if proc.returncode == 0 and rps and total and p99:
            errors = int(bad.group(1)) if bad else 0
            if socket_errors:
                errors += sum(int(g) for g in socket_errors.groups())
            return LoadResult(
                f"wrk -t2 -c{clients}",
                float(max(1, round(seconds))),
                int(total.group(1)),
                float(rps.group(1)),
                _wrk_ms(p50.group(1)) if p50 else None,
                _wrk_ms(p99.group(1)),
                errors,
            )
        log(f"wrk failed ({proc.returncode}): {proc.stderr.strip()[:300]}; using the Python load generator")
    client = Http(port, key)
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        nonlocal errors
        local, failed = [], 0
        while time.perf_counter() < deadline:
            try:
                status, ms, _, _ = client.get(path)
            except OSError:
                failed += 1
                continue
            local.append(ms)
            failed += status != 200
        with lock:
            latencies.extend(local)
            errors += failed

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return LoadResult(
        f"Python threads (http.client), {clients} clients",
        elapsed,
        len(latencies),
        len(latencies) / elapsed,
        percentile(latencies, 50),
        percentile(latencies, 99),
        errors,
    )


def fixed_rate(port: int, path: str, key: str, *, rate: float, seconds: float) -> LoadResult:
    """Open loop: request i starts at t0 + i/rate whatever happened before; its latency counts from
    that scheduled moment, so a slow answer cannot hide the queue behind it."""
    client = Http(port, key)
    total = max(1, int(rate * seconds))
    start = time.perf_counter() + 0.05
    give_up = start + 3 * seconds + 10  # an overloaded server: stop queueing, count the rest as dropped
    errors = dropped = 0
    lock = threading.Lock()

    def one(i: int) -> float | None:
        nonlocal errors, dropped
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        elif time.perf_counter() > give_up:
            with lock:
                dropped += 1
            return None
        try:
            status, _, _, _ = client.get(path)
            failed = status != 200
        except OSError:
            failed = True
        if failed:
            with lock:
                errors += 1
        return (time.perf_counter() - scheduled) * 1000

    with ThreadPoolExecutor(max_workers=64) as pool:
        latencies = [ms for ms in pool.map(one, range(total)) if ms is not None]
    elapsed = time.perf_counter() - start
    return LoadResult(
        "Python open-loop scheduler (http.client, 64 threads)",
        elapsed,
        len(latencies),
        len(latencies) / elapsed,
        percentile(latencies, 50),
        percentile(latencies, 99),
        errors,
        target_rate=rate,
        dropped=dropped,
    )


# --- the machine ---------------------------------------------------------------------------------


def machine() -> dict:
    info = {"cores": os.cpu_count() or 0, "cpu": platform.processor() or platform.machine(), "ram_gb": 0.0}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["ram_gb"] = int(line.split()[1]) / 1024 / 1024
    return info


def git_revision() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} + uncommitted changes" if dirty else head


# --- the report ----------------------------------------------------------------------------------


def verdict(spec: Spec, result: Result, results: dict[str, Result], trivial: float | None) -> tuple[str, str]:
    """(ratio column, met / not met / n/a)."""
    goal = spec.goal
    p50 = result.p50
    if p50 is None:
        return "n/a", "n/a" if goal.kind else ""
    if spec.key == "large_vs_small":
        small = results["small_companies_p1"].p50
        if not small:
            return "n/a", "n/a"
        ratio = p50 / small
        return f"{ratio:.2f}", "met" if ratio <= goal.value else "**not met**"
    ratio_text = ""
    if result.sql_ms is not None and trivial is not None:
        ratio_text = f"{p50 / (trivial + result.sql_ms):.2f}"
    if goal.kind == "ratio":
        if result.sql_ms is None or trivial is None:
            return ratio_text or "n/a", "n/a"
        return ratio_text, "met" if p50 <= goal.value * (trivial + result.sql_ms) else "**not met**"
    if goal.kind == "ms":
        met = p50 <= goal.value and (not goal.p99 or (result.p99 is not None and result.p99 <= goal.p99))
        return ratio_text, "met" if met else "**not met**"
    if goal.kind == "relative":
        other = results[goal.other].p50
        if not other:
            return ratio_text, "n/a"
        relative = p50 / other
        return f"{relative:.2f} × page 1", "met" if relative <= goal.value else "**not met**"
    return ratio_text, ""


def report(
    *,
    args,
    data: DataSet,
    results: dict[str, Result],
    specs: list[Spec],
    closed: LoadResult | None,
    fixed: LoadResult | None,
    meta: dict,
) -> str:
    labels = {spec.key: spec.label for spec in specs}
    trivial = results["trivial"].p50
    info = meta["machine"]
    lines = [
        "# Performance",
        "",
        f"Generated by `bin/bench {args.scale}` on {meta['date']} (UTC), code {meta['revision']}. "
        "Re-run it to refresh this page; the data set is reused.",
        "",
        "## Set-up",
        "",
        f"- Machine: {info['cores']} cores ({info['cpu']}), {info['ram_gb']:.1f} GB RAM, {platform.system()} "
        f"{platform.release()}; load average {meta['load_before']} before the run, {meta['load_after']} after "
        "(other work shares these cores: the figures are as noisy as that).",
        f"- PostgreSQL: {meta['postgres']} (shared_buffers {meta['shared_buffers']}); the app's queries run as "
        f"`{meta['app_role'] or 'the login user'}` with row-level security.",
        f"- App: gunicorn (gunicorn.conf.py), `axiomatic.wsgi:application`, {meta['gunicorn']}, DEBUG=0, "
        "settings `bench.settings` (production settings + the `X-Bench-Queries` header), Redis cache "
        f"{args.redis_url}.",
        f"- Scale: {data.scale:,} companies; the large entity has "
        + ", ".join(f"{n:,} {t.removeprefix('crm_')}" for t, n in data.counts.items())
        + f" rows; a second entity has {SMALL_COMPANIES} companies.",
        f"- Seeding (`seed_demo`, PostgreSQL COPY, {args.jobs} connections): {data.seed_seconds:.0f} s wall, peak RSS "
        f"{data.seed_rss_mb:.0f} MB"
        + (f", the command's own CPU {data.seed_cpu_seconds:.0f} s" if data.seed_cpu_seconds is not None else "")
        + (f" (load average {data.seed_load} as it ended)" if data.seed_load else "")
        + f"; then VACUUM (ANALYZE) {data.vacuum_seconds:.0f} s. Seeded {data.seeded_at:%Y-%m-%d %H:%M} UTC"
        + (" (reused by this run)." if data.reused else " (by this run)."),
        f"- Latency: one client, sequential requests, {args.samples} samples after 2 warm-ups, taken in rounds of "
        "one sample of every request (so load passing on the machine touches every row alike) "
        f"(fewer once a request has used {args.budget:g} s; admin pages {args.admin_samples}), client-side time "
        "including the TCP connect. p99 of fewer than 100 samples is their maximum. "
        "`SQL ms` is the equivalent plain SQL's p50 through psycopg (same role, entity set, client-side "
        "binding); `ratio` = p50 / (trivial p50 + SQL p50).",
        "",
        "## Requests",
        "",
        "| Request | p50 ms | p99 ms | n | SQL queries | SQL ms | ratio | Goal | Met |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for spec in specs:
        result = results[spec.key]
        ratio_text, met = verdict(spec, result, results, trivial)
        label = spec.label
        problems = [f"{count}× HTTP {status}" for status, count in sorted(result.statuses.items()) if status >= 300]
        if result.skipped:
            problems.append(result.skipped)
        if problems:
            label += " — " + "; ".join(problems)
        lines.append(
            f"| {label} | {fmt_ms(result.p50)} | {fmt_ms(result.p99)} | {len(result.samples) or 'n/a'} | "
            f"{result.query_count} | {fmt_ms(result.sql_ms) if result.sql_ms is not None else '—'} | "
            f"{ratio_text or '—'} | {spec.goal.describe(labels)} | {met or '—'} |"
        )
    lines += [
        "",
        "## Load: companies page 1",
        "",
        "| Phase | Load generator | Requests | Throughput req/s | p50 ms | p99 ms | Errors | Goal | Met |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for key, load in (("load_closed", closed), ("load_fixed", fixed)):
        if key == "load_closed":
            phase = f"{args.clients} concurrent clients, {args.duration:g} s"
            goal = f"≥ {args.goal_rps:g} req/s"
            met = "n/a" if load is None else ("met" if load.throughput >= args.goal_rps else "**not met**")
        else:
            phase = f"fixed {args.rate:g} req/s, {args.duration:g} s"
            goal = "p99 ≤ 100 ms"
            met = "n/a" if load is None or load.p99 is None else ("met" if load.p99 <= 100 else "**not met**")
        if load is None:
            lines.append(f"| {phase} | n/a | n/a | n/a | n/a | n/a | n/a | {goal} | n/a |")
            continue
        errors = f"{load.errors}" + (f" (+{load.dropped:,} not sent: too far behind)" if load.dropped else "")
        if load.dropped and key == "load_fixed":
            met = "**not met**"
        lines.append(
            f"| {phase} | {load.generator} | {load.requests:,} | {load.throughput:.0f} | {fmt_ms(load.p50)} | "
            f"{fmt_ms(load.p99)} | {errors} | {goal} | {met} |"
        )
    lines += [
        "",
        "## CPU per request",
        "",
        "User + system CPU of the gunicorn workers during each load phase, divided by the requests it "
        "served (the database, Redis and the load generator are not counted): what a request costs the "
        "web tier, and the figure that decides throughput on a machine whose cores are all busy.",
        "",
        "| Phase | CPU ms per request |",
        "|---|---:|",
    ]
    for key, load in (("load_closed", closed), ("load_fixed", fixed)):
        phase = f"{args.clients} concurrent clients" if key == "load_closed" else f"fixed {args.rate:g} req/s"
        value = "n/a" if load is None or load.cpu_ms is None else f"{load.cpu_ms:.2f}"
        lines.append(f"| companies page 1, {phase} | {value} |")
    lines += [
        "",
        "Rows: page 1 lists use the default page size (50); the SQL of a page reads 51 rows (the 51st says "
        "whether more follow). Cursor rows follow `nextCursor` from page 1 until the depth is behind, then "
        "time that page; their SQL is the keyset query after the same row. The admin is signed in as a "
        "superuser (all entities); its lists show 100 rows a page. Goals marked “as companies” apply the "
        "companies rule to the other lists.",
        "",
    ]
    lines += gaps_section(specs, results, closed, meta.get("breakdown"), goal_rps=args.goal_rps)
    if meta.get("bulk") is not None:
        from bench.bulk import report_lines

        lines += report_lines(meta["bulk"])
    if meta.get("errors"):
        lines += ["## Errors the app logged", "", *[f"- {error}" for error in meta["errors"]], ""]
    return "\n".join(lines)


def gaps_section(
    specs: list[Spec],
    results: dict[str, Result],
    closed: LoadResult | None,
    breakdown: dict | None,
    *,
    goal_rps: float,
) -> list[str]:
    """Where a page's time goes (measured in this run) and, for each goal this run did not meet,
    the measured gap and why."""
    lines = ["## Where a page 1 request spends its time", ""]
    if breakdown is None:
        lines += ["Not measured in this run (`bench.breakdown` failed; see the log).", ""]
    else:
        lines += [
            f"Companies page 1 served in process by Django's own handler (no network, no gunicorn): "
            f"{breakdown['ms_per_request']:.1f} ms a request. Shares of it under cProfile "
            "(`bench/breakdown.py`):",
            "",
            "| Part | Share |",
            "|---|---:|",
            *[f"| {part} | {share * 100:.0f} % |" for part, share in breakdown["shares"].items()],
            "",
        ]
    trivial = results["trivial"].p50
    missed = [spec for spec in specs if verdict(spec, results[spec.key], results, trivial)[1] == "**not met**"]
    ratio_missed = [spec for spec in missed if spec.goal.kind == "ratio"]
    lines += ["## Goals not met, and why", ""]
    header_end = len(lines)
    page = results["companies_p1"]
    if ratio_missed and page.p50 is not None and trivial is not None and page.sql_ms is not None:
        names = ", ".join(spec.label for spec in ratio_missed)
        lines.append(
            f"- **p50 ≤ 1.5 × (trivial + SQL)** ({names}). The trivial endpoint answers in {trivial:.1f} ms "
            "because it is answered by the second middleware, before the rest of them, authentication and DRF "
            "run; the companies "
            f"page's own SQL takes {page.sql_ms:.1f} ms. The page adds "
            f"{page.p50 - trivial - page.sql_ms:.1f} ms of Python to that, the same for a 20-company entity: "
            "the API key lookup (one query, under row-level security), setting the request's entity for "
            "row-level security, the middleware (request ids, metrics, sign-in protection, idempotency, the "
            "change-feed context), DRF's dispatch and permission checks, then representing and rendering 50 "
            "rows (the table above). Each part does only what it must (one query for the key with its "
            "membership, one for the page with its total, compiled field accessors, orjson); what is left is "
            "the price of a Django and DRF request, and the ratio would need a request path outside them."
        )
    if closed is not None and closed.throughput < goal_rps:
        lines.append(
            f"- **≥ {goal_rps:g} req/s** ({closed.throughput:.0f} measured). The gunicorn workers, PostgreSQL "
            "and the load generator share two cores, and each request costs the CPU time above (see "
            '"CPU per request"): more '
            "throughput here needs fewer CPU milliseconds per request, not more workers. A machine with more "
            "cores serves more with more workers. The open-loop phase runs near that ceiling, so its p99 is "
            "time spent queueing."
        )
    for spec in missed:
        if spec.goal.kind == "ratio":
            continue
        result = results[spec.key]
        gap = f"p50 {fmt_ms(result.p50)} ms against {spec.goal.describe({s.key: s.label for s in specs})}"
        if spec.key == "admin_company_p5000":
            lines.append(
                f"- **{spec.label}** ({gap}). A superuser's page 5,000 reads 500,000 entries of the ordering "
                "index before its 100 rows (the entity is carried in the index, so no table row is visited): "
                "the price of OFFSET, which the admin's page links use. The API's cursors do not pay it."
            )
        elif spec.key == "q_random":
            p99 = fmt_ms(result.p99)
            lines.append(
                f"- **{spec.label}** ({gap}; p99 {p99} ms). Page 1 of a search first walks the list's order "
                "index through at most 5,000 rows (3–9 ms): a term matching 1 % of the rows spread along the "
                "order fills its page there. When the walk comes back short the matches are found through the "
                "trigram index, counted and sorted in one scan. That scan's cost follows the term's trigram "
                "candidates, not its matches: a surname fragment sits together late in the order (thousands "
                "of matches to sort), and a fragment such as `r Osco` has few matches but every name holding "
                "`osco` as a candidate to recheck, tens of thousands of rows at a million. The count the "
                "contract asks for (exact up to 10,000) must read them too. The slow draws are those; the "
                "rest answer at the cost of a list page plus a few milliseconds. Each term is asked once per "
                "round, so most samples are a term's first reading of its candidates' table pages, from disk "
                "where the operating system does not keep the data set cached."
            )
        else:
            lines.append(f"- **{spec.label}** ({gap}): not explained by this command; start with its EXPLAIN.")
    if len(lines) == header_end:
        lines.append("Every goal above is met in this run.")
    return [*lines, ""]


# --- the run -------------------------------------------------------------------------------------


_CLIENT_GONE = ("BrokenPipeError", "ConnectionResetError", "SystemExit")  # load generators hanging up


def app_errors(log_path: Path, *, upto: int | None = None, limit: int = 5) -> list[str]:
    """The distinct errors the app logged (JSON lines at ERROR) in the first `upto` bytes of its log:
    the message and the exception's last line. A client hanging up mid-answer is not an app error."""
    seen: dict[str, int] = {}
    with contextlib.suppress(OSError), open(log_path, "rb") as handle:
        text = handle.read(upto if upto is not None else -1).decode(errors="replace")
        for line in text.splitlines():
            if not line.startswith("{") or '"level": "ERROR"' not in line:
                continue
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                detail = (entry.get("exc_info") or "").strip().splitlines()
                last = detail[-1] if detail else ""
                if last.startswith(_CLIENT_GONE):
                    continue
                message = f"{entry.get('message', '')}: {last}".strip(": ")
                seen[message] = seen.get(message, 0) + 1
    return [f"{count}× {text}" for text, count in list(seen.items())[:limit]]


def request_breakdown(env: dict, path: str, key: str) -> dict | None:
    """`bench.breakdown` in a process of its own, with the app's environment: ms per request in
    process and the share of each part of it."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.breakdown", path, key],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        log(f"breakdown failed: {proc.stderr.strip()[-500:]}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def load_average() -> str:
    try:
        return " / ".join(f"{value:.1f}" for value in os.getloadavg())
    except OSError:
        return "n/a"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bin/bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("scale", nargs="?", type=int, default=1_000_000, help="companies (default 1,000,000)")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL))
    parser.add_argument("--output", default=str(ROOT / "docs" / "performance.md"))
    parser.add_argument("--samples", type=int, default=50, help="timed requests per API row (default 50)")
    parser.add_argument("--admin-samples", type=int, default=5)
    parser.add_argument("--budget", type=float, default=20.0, help="seconds of sampling per row before stopping early")
    parser.add_argument("--cursor-depth", type=int, default=None, help="rows behind the cursor page (default 5,000)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=None, help="WEB_CONCURRENCY (default: gunicorn.conf.py's)")
    parser.add_argument("--threads", type=int, default=None, help="GUNICORN_THREADS (default: gunicorn.conf.py's)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of each load phase")
    parser.add_argument("--rate", type=float, default=150.0)
    parser.add_argument("--goal-rps", type=float, default=300.0)
    parser.add_argument("--jobs", type=int, default=2, help="seed_demo --jobs")
    parser.add_argument("--reseed", action="store_true", help="seed a new data set even if one exists")
    parser.add_argument("--drop-database", action="store_true", help="drop the database afterwards (CI)")
    args = parser.parse_args(argv)
    if args.scale < 2:
        parser.error("SCALE must be at least 2")
    if args.cursor_depth is None:
        args.cursor_depth = min(5_000, max(PAGE_SIZE, args.scale // 4))
    return args


def app_environment(args, port: int) -> dict:
    env = dict(os.environ)
    for name in ("DJANGO_SETTINGS_MODULE", "PYTEST_XDIST_WORKER", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(name, None)
    env.update(
        DJANGO_SETTINGS_MODULE="bench.settings",
        DATABASE_URL=args.database_url,
        REDIS_URL=args.redis_url,
        CACHE_KEY_PREFIX=f"bench-{os.getpid()}-{secrets.token_hex(3)}",
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        FIELD_ENCRYPTION_KEYS=base64.urlsafe_b64encode(os.urandom(32)).decode(),
        API_RATE_LIMIT_PER_MINUTE="1000000000",
        GUNICORN_BIND=f"127.0.0.1:{port}",
        GUNICORN_LOG_LEVEL="warning",
        PYTHONUNBUFFERED="1",
        # As in production: tasks a request queues (a merge's duplicate refresh, webhooks) go to the
        # broker for a worker, not into the request (Celery's eager mode without one). The bench
        # runs no worker; the queue is its own and is deleted at the end (`bench.bulk.drop_queue`).
        CELERY_BROKER_URL=args.redis_url,
        CELERY_TASK_DEFAULT_QUEUE=f"bench-{os.getpid()}",
    )
    for name in ("WEB_CONCURRENCY", "GUNICORN_THREADS"):
        env.pop(name, None)  # gunicorn.conf.py's measured choice, unless asked otherwise
    if args.workers:
        env["WEB_CONCURRENCY"] = str(args.workers)
    if args.threads:
        env["GUNICORN_THREADS"] = str(args.threads)
    return env


def gunicorn_shape(env: dict) -> str:
    """Workers and worker class as gunicorn.conf.py sets them for this environment."""
    import runpy

    saved = dict(os.environ)
    try:
        os.environ.update(env)
        conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    threads = f" × {conf['threads']} threads" if conf.get("threads", 1) > 1 else ""
    return f"{conf['workers']} {conf['worker_class']} workers{threads}"


def start_gunicorn(env: dict, log_path: Path) -> subprocess.Popen:
    with open(log_path, "w") as log_file:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "axiomatic.wsgi:application"],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )


def wait_ready(proc: subprocess.Popen, port: int, log_path: Path) -> None:
    client = Http(port)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"gunicorn exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
        with contextlib.suppress(OSError):
            if client.get("/livez")[0] == 200:
                return
        time.sleep(0.3)
    raise BenchError("gunicorn did not answer /livez within 90 s")


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)  # gunicorn's quick shutdown: nothing is in flight any more
    try:
        proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run(args) -> int:
    meta = {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"), "load_before": load_average()}
    meta["machine"], meta["revision"] = machine(), git_revision()
    port = free_port()
    env = app_environment(args, port)
    ensure_database(args.database_url)
    if args.scale >= 100_000:
        free_gb = shutil.disk_usage("/").free / 1e9
        log(f"disk: {free_gb:.0f} GB free on / (a million companies take about 5 GB with indexes)")
    log("migrate")
    django_setup(env)
    command("migrate", "--noinput", "--verbosity", "0")
    log_dir = Path(tempfile.mkdtemp(prefix="bench-"))
    meta["gunicorn"] = gunicorn_shape(env)
    log(f"gunicorn on port {port} ({meta['gunicorn']}), log {log_dir / 'gunicorn.log'}")
    gunicorn = start_gunicorn(env, log_dir / "gunicorn.log")  # starts while the data is prepared
    sql = None
    closed = fixed = None
    finished = False
    try:
        data = None if args.reseed else find_data_set(args.database_url, args.scale)
        if data is None:
            data = seed(env, args.database_url, args.scale, args.jobs)
        else:
            log(f"reusing the data set of scale {args.scale:,} seeded {data.seeded_at:%Y-%m-%d %H:%M}")
        data.counts = row_counts(args.database_url, data.large)

        admin_email, admin_password = "bench-admin@example.com", secrets.token_urlsafe(18)
        command("create_user", admin_email, "--entity", data.large, "--password", admin_password)
        scopes = ("--scopes", "read:crm", "--expires-in-days", "1", "--name", "bench")
        keys = {
            "large": command("create_api_key", "--entity", data.large, *scopes)["key"],
            "small": command("create_api_key", "--entity", data.small, *scopes)["key"],
        }
        write_scopes = ("--scopes", "read:crm,write:crm", "--expires-in-days", "1", "--name", "bench merges")
        keys["write"] = command("create_api_key", "--entity", data.large, *write_scopes)["key"]
        from django.db import connections

        connections.close_all()
        with connect(args.database_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE axiomatic_user SET is_staff = true, is_superuser = true WHERE email = %s", [admin_email]
            )
            meta["postgres"] = conn.execute("SHOW server_version").fetchone()[0]
            meta["shared_buffers"] = conn.execute("SHOW shared_buffers").fetchone()[0]

        sql = PlainSql(args.database_url, os.environ.get("DB_APP_ROLE", "axiomatic_app"))
        meta["app_role"] = sql.role
        name_row = sql.one(
            "SELECT substring(name from 2 for 6) FROM crm_company WHERE entity_id = %s "
            "AND name ~ '^[A-Za-z]{7,} ' ORDER BY id LIMIT 1",
            [data.large],
        ) or sql.one("SELECT substring(name from 1 for 6) FROM crm_company WHERE entity_id = %s LIMIT 1", [data.large])
        selective_q = (name_row[0] if name_row else "zzzzzz").lower()
        specs = build_specs(args.scale, selective_q=selective_q, cursor_depth=args.cursor_depth)
        results = {spec.key: Result(spec) for spec in specs}

        wait_ready(gunicorn, port, log_dir / "gunicorn.log")
        client = Http(port, keys["large"])
        first = client.get(f"/api/crm/companies?entityId={data.large}")
        if first[0] != 200:
            raise BenchError(f"companies page 1 answered {first[0]}: {first[3][:300]!r}")
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:  # every worker warm
            list(pool.map(lambda _: client.get(f"/api/crm/companies?entityId={data.large}"), range(6 * WORKERS)))

        # Cursor pages at depth: walk there once, then time that page like any other.
        for kind in ("companies", "contacts", "leads", "activities"):
            spec = next(s for s in specs if s.key == f"{kind}_cursor")
            path, behind, problem = follow_cursor(client, f"{_LISTS[kind][0]}?entityId={data.large}", args.cursor_depth)
            if path is None:
                results[spec.key].skipped = problem
                spec.sql = None
                continue
            spec.path = path
            spec.label = f"{kind} by `nextCursor` at depth {behind:,} rows"
            key_sql = {
                "companies": "SELECT name, NULL, id",
                "contacts": "SELECT last_name, first_name, id",
                "leads": "SELECT updated_at, NULL, id",
                "activities": "SELECT occurred_at, NULL, id",
            }[kind]
            _, table, order, _, _ = _LISTS[kind]
            row = sql.one(
                f"{key_sql} FROM {table} WHERE entity_id = %s ORDER BY {order} OFFSET %s LIMIT 1",
                [data.large, max(0, behind - 1)],
            )
            if row:
                spec.sql_params = {"k1": row[0], "k2": row[1], "id": row[2]}
            else:
                spec.sql = None

        admin = admin_session(port, admin_email, admin_password)
        rows = []
        for spec in specs:
            result = results[spec.key]
            if spec.key == "large_vs_small" or (not spec.path and spec.key != "q_random"):
                continue
            path = spec.path.format(large=data.large, small=data.small)
            if spec.admin:

                def get(path=path):
                    started = time.perf_counter()
                    response = admin.get(f"http://127.0.0.1:{port}{path}", timeout=120, allow_redirects=False)
                    ms = (time.perf_counter() - started) * 1000
                    queries = response.headers.get(QUERIES_HEADER)
                    return response.status_code, ms, int(queries) if queries else None

                rows.append((result, get, args.admin_samples))
            elif spec.key == "q_random":
                terms = random_terms(sql, data.large, RANDOM_TERMS)
                turn = iter(range(10**9))

                def get(terms=terms, turn=turn):
                    status, ms, queries, _ = client.get(terms[next(turn) % len(terms)])
                    return status, ms, queries

                rows.append((result, get, len(terms)))  # after the two warm-ups: each term once, in turn
            else:
                key = keys["small"] if spec.entity == "small" else keys["large"]

                def get(path=path, key=key):
                    status, ms, queries, _ = client.get(path, key=key)
                    return status, ms, queries

                rows.append((result, get, args.samples))
        log(f"measuring {len(rows)} requests, one sample of each in turn")
        measure_interleaved(rows, budget=args.budget)
        source = results["companies_p1"]
        large_vs_small = results["large_vs_small"]
        large_vs_small.samples, large_vs_small.statuses, large_vs_small.queries = (
            source.samples,
            source.statuses,
            source.queries,
        )
        log("timing the plain SQL of each request")
        for spec in specs:
            if spec.sql and spec.path:
                entity = data.small if spec.entity == "small" else data.large
                results[spec.key].sql_ms = sql.time(spec.sql, spec.sql_params, entity, max(5, min(args.samples, 20)))

        log("merges: a pair made for each sample, merged through the API, removed afterwards")
        for key_name, kind, samples in (
            ("merge_contacts", "contact", min(args.samples, 20)),
            ("merge_company", "company", 3),
        ):
            result = results[key_name]
            result.samples, result.statuses, result.queries = merges.measure(
                lambda path, body: client.post(path, body, key=keys["write"]),
                data.large,
                kind=kind,
                samples=samples,
                memberships=min(merges.MEMBERSHIPS, args.scale // 2),
                budget=args.budget * 3,
            )

        log("custom fields: page 1 with and without, cf.<key>= against role=, create with values")
        cf_key = command(
            "create_api_key", "--entity", data.large, "--scopes", "read:crm,write:crm", "--expires-in-days", "1"
        )["key"]
        meta["custom_fields"] = bench_custom_fields.measure(
            port=port, key=cf_key, entity=data.large, other=data.small, connect=connect, url=args.database_url,
            samples=max(5, args.samples),
        )  # fmt: skip
        page1 = f"/api/crm/companies?entityId={data.large}"
        log("where companies page 1 spends its time (in process, cProfile)")
        meta["breakdown"] = request_breakdown(env, page1, keys["large"])
        log(f"load: {args.clients} concurrent clients for {args.duration:g} s")
        closed = with_cpu(
            gunicorn.pid,
            lambda: closed_loop(port, page1, keys["large"], clients=args.clients, seconds=args.duration),
        )
        log(f"load: {args.rate:g} req/s for {args.duration:g} s")
        fixed = with_cpu(
            gunicorn.pid, lambda: fixed_rate(port, page1, keys["large"], rate=args.rate, seconds=args.duration)
        )
        log("bulk writes: export, import, batch (bench/bulk.py)")
        try:
            from bench.bulk import measure as measure_bulk

            meta["bulk"] = measure_bulk(env, args.database_url, data.large, keys["large"])
        except Exception as exc:
            log(f"bulk writes not measured: {exc}")
            meta["bulk"] = {}
        log("done measuring")
        finished = True
    finally:
        log_path = log_dir / "gunicorn.log"
        measured_bytes = log_path.stat().st_size if log_path.exists() else 0  # not the shutdown's own noise
        stop(gunicorn)
        with contextlib.suppress(Exception):  # no worker reads the app's queue
            drop_queue(env)
        if sql is not None:
            sql.close()
        meta["errors"] = app_errors(log_path, upto=measured_bytes)
        if finished and not meta["errors"]:
            shutil.rmtree(log_dir, ignore_errors=True)
        else:
            log(f"the app's log is kept in {log_dir}")
    meta["load_after"] = load_average()
    text = report(args=args, data=data, results=results, specs=specs, closed=closed, fixed=fixed, meta=meta)
    if meta.get("custom_fields"):
        text = text.rstrip("\n") + "\n\n" + bench_custom_fields.section(meta["custom_fields"])
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text + kept_sections(output))
    log(f"wrote {output}")
    print(text)
    if args.drop_database:
        drop_database(args.database_url)
    return 0


KEPT_MARKER = "<!-- Measured outside bin/bench: kept as written when the page is regenerated. -->"


def kept_sections(output: Path) -> str:
    """The hand-written part of the page after KEPT_MARKER (figures that other tools measure, such as
    the inbound mail sync test), so that regenerating the benchmark's own tables never drops them."""
    if not output.exists():
        return ""
    previous = output.read_text()
    at = previous.find(KEPT_MARKER)
    return "" if at < 0 else "\n" + previous[at:]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run(args)
    except BenchError as exc:
        log(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
