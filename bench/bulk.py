"""Bulk writes for `bin/bench`: CSV import, export and batch, against their goals.

- Export: `GET /api/crm/companies/export` of the large entity (every company of the seeded data
  set, read only), streamed through Django's test client in a process of its own, so its wall
  time and peak RSS are the export's alone.
- Import: 100,000 new contacts (10 columns and 2 custom fields) with
  `manage.py import_csv` (one process = one worker), then the same file again (`matchOn=email`,
  every row unchanged); wall time and peak RSS of each process.
- Duplicate pairs of the imported contacts: an import queues them for the worker
  (`crm.refresh_duplicates`, published at the broker's lowest priority so the import's own tasks go
  first); here the import publishes to a scratch queue of the bench's Redis, as in production, and
  that work is then timed on its own (`duplicates_refresh_ids` over every imported contact, as the
  tasks would run it), so the import's time is the import's and the refresh's is reported beside it.
- Batch: p50 of `POST /companies/batch` with 100 creates against p50 of one `POST /companies`.

Import and batch write, so they run in a scratch database (`<bench database>_bulk`, created,
migrated and dropped here): the seeded data set is never changed.

`python -m bench.bulk --database-url URL --entity UUID --key ak_...` runs it alone and prints JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parent.parent
IMPORT_ROWS = int(os.environ.get("BENCH_IMPORT_ROWS", "100000"))  # the goal's 100k; the test of bin/bench uses fewer
BATCH_SAMPLES = 15
GOALS = {
    "import_create": (f"import {IMPORT_ROWS:,} new contacts (10 columns, 2 custom fields), one worker", 60.0, 300.0),
    "import_unchanged": ("the same file again, matchOn=email, all unchanged", 45.0, 300.0),
    "export": ("export every company of the large entity", 60.0, 150.0),
}


def _child(argv: list[str], env: dict) -> dict:
    """Run `python -m bench.bulk <argv>` and return its JSON line (it reports its own peak RSS)."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.bulk", *argv], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"bench.bulk {argv[0]} failed: {done.stderr[-2000:]}")
    return json.loads(lines[-1])


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _setup() -> None:
    import django

    django.setup()
    from axiomatic.ops.database import COMMAND, set_process_role

    set_process_role(COMMAND)


# --- children -----------------------------------------------------------------------------------------


def child_export(entity: str, key: str) -> dict:
    _setup()
    from django.test import Client

    started = time.perf_counter()
    response = Client().get(f"/api/crm/companies/export?entityId={entity}", headers={"Authorization": f"Bearer {key}"})
    if response.status_code != 200:
        raise RuntimeError(f"export answered {response.status_code}: {response.content[:300]!r}")
    rows = size = 0
    for chunk in response.streaming_content:
        rows += chunk.count(b"\n")
        size += len(chunk)
    return {"seconds": time.perf_counter() - started, "rows": rows - 1, "bytes": size, "peakMb": _peak_mb()}


def child_import(path: str, entity: str, match_on: str) -> dict:
    _setup()
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    started = time.perf_counter()
    call_command(
        "import_csv", path, "--entity", entity, "--object-type", "contact", "--match-on", match_on,
        "--no-progress", stdout=out,
    )  # fmt: skip
    job = json.loads(out.getvalue().strip().splitlines()[-1])
    return {"seconds": time.perf_counter() - started, "job": job, "peakMb": _peak_mb()}


def child_refresh(entity: str) -> dict:
    """The duplicate refresh the import queued, run as the worker runs it (500 contacts a
    statement): wall time and the pairs found."""
    _setup()
    from axiomatic.rls import entity_scope
    from crm.models import Contact, ContactDuplicate
    from crm.services.duplicates import duplicates_refresh_ids

    with entity_scope(entity):
        ids = [str(pk) for pk in Contact.objects.filter(entity_id=entity).order_by().values_list("pk", flat=True)]
        started = time.perf_counter()
        duplicates_refresh_ids(model_name="contact", ids=ids)
        seconds = time.perf_counter() - started
        pairs = ContactDuplicate.objects.filter(entity_id=entity).count()
    return {"seconds": seconds, "rows": len(ids), "pairs": pairs, "peakMb": _peak_mb()}


def child_batch(entity: str, key: str) -> dict:
    _setup()
    from django.test import Client

    client = Client()
    headers = {"Authorization": f"Bearer {key}"}
    url = f"/api/crm/companies?entityId={entity}"

    def timed(path: str, body: dict) -> float:
        started = time.perf_counter()
        response = client.post(path, data=json.dumps(body), content_type="application/json", headers=headers)
        elapsed = time.perf_counter() - started
        if response.status_code not in (200, 201):
            raise RuntimeError(f"{path} answered {response.status_code}: {response.content[:300]!r}")
        return elapsed

    singles, batches = [], []
    for sample in range(BATCH_SAMPLES + 2):  # two warm-up rounds
        single = timed(url, {"name": f"Single {sample}", "domain": f"single{sample}.example", "city": "Rome"})
        items = [
            {"name": f"Batch {sample}-{n}", "domain": f"b{sample}-{n}.example", "city": "Rome"} for n in range(100)
        ]
        batch = timed(f"/api/crm/companies/batch?entityId={entity}", {"operation": "create", "items": items})
        if sample >= 2:
            singles.append(single)
            batches.append(batch)
    single_ms, batch_ms = statistics.median(singles) * 1000, statistics.median(batches) * 1000
    return {"singleMs": single_ms, "batchMs": batch_ms, "ratio": batch_ms / single_ms}


# --- the parent ---------------------------------------------------------------------------------------


def _scratch_url(url: str, suffix: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + suffix))


def _admin(url: str, sql: str) -> None:
    parts = urlsplit(url)
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(sql)


def _contacts_csv(path: Path, owner: str, *, rows: int = IMPORT_ROWS) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["First Name", "Last Name", "Email", "Phone", "Job Title", "LinkedIn URL", "Notes", "Company Domain",
             "Owner User Id", "Company Name", "Region", "Seats"]
        )  # fmt: skip
        for n in range(rows):
            writer.writerow(
                [f"First{n}", f"Last{n}", f"person{n}@example.com", f"+1 555 {n:07d}", "Engineer",
                 f"https://www.linkedin.com/in/p{n}", "Met at the fair", f"company{n % 97}.example", owner,
                 f"Company {n % 97}", ("emea", "amer", "apac")[n % 3], str(n % 500)]
            )  # fmt: skip


def measure(env: dict, database_url: str, entity: str, read_key: str) -> dict:
    """Every bulk figure; `env` is the bench's app environment (settings, secrets)."""
    results: dict = {}
    base = {**env, "DATABASE_URL": database_url, "DEBUG": "0"}
    results["export"] = _child(["export", "--entity", entity, "--key", read_key], base)

    with scratch_entity(base, database_url, suffix="_bulk", label="Bulk bench") as (work, created, manage):
        key = subprocess.run(
            [*manage, "create_api_key", "--entity", created["entityId"], "--scopes", "read:crm,write:crm"],
            cwd=ROOT, env=work, check=True, capture_output=True, text=True,
        )  # fmt: skip
        write_key = json.loads(key.stdout.strip().splitlines()[-1])["key"]
        with tempfile.TemporaryDirectory(prefix="bench-bulk-") as folder:
            path = Path(folder) / "contacts.csv"
            _contacts_csv(path, created["ownerUserId"])
            # Companies the rows name, so the file links them (company domain) as real files do.
            companies = [{"name": f"Company {n}", "domain": f"company{n}.example"} for n in range(97)]
            _child(["fields", "--entity", created["entityId"], "--key", write_key], work)  # 2 custom fields
            results["batch"] = _child(["batch", "--entity", created["entityId"], "--key", write_key], work)
            _seed_companies(work, created["entityId"], write_key, companies)
            results["import_create"] = _child(
                ["import", str(path), "--entity", created["entityId"], "--match-on", "email"], work
            )
            results["import_unchanged"] = _child(
                ["import", str(path), "--entity", created["entityId"], "--match-on", "email"], work
            )
            results["refresh"] = {
                **_child(["refresh", "--entity", created["entityId"]], work),
                "queued": drop_queue(work),
            }
    return results


@contextmanager
def scratch_entity(env: dict, database_url: str, *, suffix: str, label: str):
    """A scratch database beside `database_url` (created, migrated, dropped afterwards) with one
    entity, and the environment that works in it: (env, the entity as `create_entity` printed it,
    the manage.py command). Tasks go to a scratch queue of the bench's Redis, as to a worker in
    production, instead of running inside the bench's process (Celery's eager mode without a
    broker); the queue is deleted afterwards."""
    scratch = _scratch_url(database_url, suffix)
    name = urlsplit(scratch).path.lstrip("/")
    _admin(scratch, f'DROP DATABASE IF EXISTS "{name}"')
    _admin(scratch, f'CREATE DATABASE "{name}"')
    work = {
        **env,
        "DATABASE_URL": scratch,
        "CELERY_BROKER_URL": env.get("REDIS_URL", "redis://127.0.0.1:6379/14"),
        "CELERY_TASK_DEFAULT_QUEUE": f"bench{suffix.replace('_', '-')}-{os.getpid()}",
    }
    manage = [sys.executable, "manage.py"]
    try:
        subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=work, check=True)
        made = subprocess.run(
            [*manage, "create_entity", label, "--owner-email", f"{name}@example.com"],
            cwd=ROOT, env=work, check=True, capture_output=True, text=True,
        )  # fmt: skip
        yield work, json.loads(made.stdout.strip().splitlines()[-1]), manage
    finally:
        drop_queue(work)
        _admin(scratch, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def drop_queue(env: dict) -> int:
    """Delete `env`'s task queue (every priority's list, kombu's `<queue>\x06\x16<n>`): no worker
    reads it. Returns the messages it held."""
    import redis

    queue = env["CELERY_TASK_DEFAULT_QUEUE"]
    client = redis.Redis.from_url(env["CELERY_BROKER_URL"])
    keys = [queue, *(f"{queue}\x06\x16{priority}" for priority in (3, 6, 9))]
    held = sum(client.llen(key) for key in keys)
    client.delete(*keys)
    return held


def _seed_companies(env: dict, entity: str, key: str, companies: list[dict]) -> None:
    _child(["companies", "--entity", entity, "--key", key, "--body", json.dumps(companies)], env)


def child_companies(entity: str, key: str, body: str) -> dict:
    _setup()
    from django.test import Client

    response = Client().post(
        f"/api/crm/companies/batch?entityId={entity}",
        data=json.dumps({"operation": "create", "items": json.loads(body)}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {key}"},
    )
    return {"status": response.status_code}


def child_fields(entity: str, key: str) -> dict:
    """Two custom fields of contacts (a select and a number), as the import goal names them."""
    _setup()
    from django.test import Client

    client, headers = Client(), {"Authorization": f"Bearer {key}"}
    bodies = [
        {"objectType": "contact", "key": "region", "label": "Region", "type": "select",
         "options": [{"value": v, "label": v.upper()} for v in ("emea", "amer", "apac")]},
        {"objectType": "contact", "key": "seats", "label": "Seats", "type": "number"},
    ]  # fmt: skip
    statuses = [
        client.post(
            f"/api/crm/custom-fields?entityId={entity}", data=json.dumps(body), content_type="application/json",
            headers=headers,
        ).status_code
        for body in bodies
    ]  # fmt: skip
    if statuses != [201, 201]:
        raise RuntimeError(f"custom fields answered {statuses}")
    return {"statuses": statuses}


def report_lines(results: dict) -> list[str]:
    """The "Bulk writes" section of docs/performance.md."""
    lines = [
        "## Bulk writes",
        "",
        "`bench/bulk.py`: export of the seeded large entity (read only); import and batch in a scratch database.",
        "",
        "| Operation | Rows | Time | Goal | Peak RSS | Goal | Met |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for key, (label, seconds_goal, rss_goal) in GOALS.items():
        found = results.get(key)
        if not found:
            lines.append(f"| {label} | – | – | ≤ {seconds_goal:.0f} s | – | ≤ {rss_goal:.0f} MB | not measured |")
            continue
        rows = found.get("rows") or found.get("job", {}).get("processedRows", 0)
        met = found["seconds"] <= seconds_goal and found["peakMb"] <= rss_goal
        lines.append(
            f"| {label} | {rows:,} | {found['seconds']:.1f} s | ≤ {seconds_goal:.0f} s | {found['peakMb']:.0f} MB "
            f"| ≤ {rss_goal:.0f} MB | {'met' if met else 'NOT met'} |"
        )
    refresh = results.get("refresh")
    if refresh:
        lines += [
            "",
            f"Duplicate pairs of the imported contacts: the import queued {refresh['queued']:,} refresh tasks "
            f"(lowest priority); run as the worker runs them, they compared {refresh['rows']:,} contacts with "
            f"their colleagues (the file links them to 97 companies, about a thousand people each) in "
            f"{refresh['seconds']:.1f} s and found {refresh['pairs']:,} pairs, after the import and without "
            "delaying it.",
        ]
    batch = results.get("batch")
    if batch:
        met = batch["ratio"] <= 10
        lines += [
            "",
            f"Batch: `POST /companies/batch` with 100 creates p50 {batch['batchMs']:.1f} ms against one "
            f"`POST /companies` p50 {batch['singleMs']:.1f} ms: {batch['ratio']:.1f}× (goal ≤ 10×, "
            f"{'met' if met else 'NOT met'}).",
        ]
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "what",
        nargs="?",
        default="all",
        choices=("all", "export", "import", "refresh", "batch", "companies", "fields"),
    )
    parser.add_argument("path", nargs="?")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--entity")
    parser.add_argument("--key")
    parser.add_argument("--match-on", default="email")
    parser.add_argument("--body")
    args = parser.parse_args(argv)
    if args.what == "export":
        result = child_export(args.entity, args.key)
    elif args.what == "import":
        result = child_import(args.path, args.entity, args.match_on)
    elif args.what == "refresh":
        result = child_refresh(args.entity)
    elif args.what == "batch":
        result = child_batch(args.entity, args.key)
    elif args.what == "fields":
        result = child_fields(args.entity, args.key)
    elif args.what == "companies":
        result = child_companies(args.entity, args.key, args.body)
    else:
        env = {**os.environ}
        env.setdefault("DJANGO_SETTINGS_MODULE", "axiomatic.settings")
        result = measure(env, args.database_url, args.entity, args.key)
        print("\n".join(report_lines(result)), file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
