"""A real Celery worker process applies an import; killed mid-import (SIGKILL), the next worker
resumes after the last committed chunk: every row applied exactly once, the counts exact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from axiomatic.models import Change
from crm.models import Company, Import
from tests.crm.bulk_helpers import csv_text, upload
from tests.crm.email.conftest import BROKER_URL, QUEUE, celery_on_broker

pytestmark = [pytest.mark.worker]

ROOT = Path(__file__).resolve().parents[2]
ROWS = 1500


def _start_worker() -> subprocess.Popen:
    """`celery -A axiomatic worker` as its own process, on this test's database and queue."""
    settings = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}",
        "CELERY_BROKER_URL": BROKER_URL,
        "CELERY_TASK_DEFAULT_QUEUE": QUEUE,
        "IMPORT_CHUNK_ROWS": "100",
        "IMPORT_CHUNK_PAUSE_SECONDS": "0.15",
        "IMPORT_STALE_SECONDS": "2",
    }
    command = [sys.executable, "-m", "celery", "-A", "axiomatic", "worker", "--pool", "solo", "-Q", QUEUE]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "warning"]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait(predicate, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _job(pk) -> Import:
    return Import.objects.get(pk=pk)


def test_a_worker_killed_mid_import_is_resumed_with_exact_counts(api, entity, transactional_db):
    content = csv_text([["name", "city"], *([f"Company {n:04d}", "Rome"] for n in range(ROWS))])
    workers = []
    with celery_on_broker(BROKER_URL):
        try:
            workers.append(_start_worker())
            response = upload(api, content, objectType="company", matchOn="none")
            assert response.status_code == 202, response.content
            pk = response.json()["import"]["id"]
            _wait(lambda: _job(pk).processed_rows >= 300, timeout=60, what="the first chunks")
            workers[0].send_signal(signal.SIGKILL)
            workers[0].wait(timeout=10)
            killed_at = _job(pk)
            assert killed_at.status == "running" and 300 <= killed_at.processed_rows < ROWS
            time.sleep(0.5)
            assert _job(pk).processed_rows == killed_at.processed_rows  # nobody is working on it

            workers.append(_start_worker())
            job = _wait(
                lambda: (found := _job(pk)).status in ("succeeded", "failed") and found, timeout=90, what="the resume"
            )
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait(timeout=10)
    assert job.status == "succeeded", job.error
    assert (job.total_rows, job.processed_rows, job.created, job.failed, job.updated) == (ROWS, ROWS, ROWS, 0, 0)
    names = list(Company.objects.filter(entity=entity).values_list("name", flat=True))
    assert len(names) == ROWS and len(set(names)) == ROWS  # no row applied twice, none lost
    assert Change.objects.filter(entity_id=entity.pk, type="company.created").count() == ROWS
    assert api.get("/companies").json()["total"] == ROWS
