"""`bin/bench` end to end at a tiny scale, so the benchmark never rots.

It seeds 200 companies into this test database, serves the app under gunicorn, measures every
request with a few samples and a one-second load phase, and writes its report to a temporary
file (docs/performance.md holds the real figures and is not touched).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from bench import run as bench

pytestmark = pytest.mark.django_db(transaction=True)


def _table(text: str, heading: str) -> list[list[str]]:
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]  # past the header and rule
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows]


def test_bench_at_scale_200_reports_every_row(tmp_path):
    db = connection.settings_dict
    url = f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    output = tmp_path / "performance.md"
    docs = Path(settings.BASE_DIR) / "docs" / "performance.md"
    before = docs.read_bytes() if docs.exists() else None
    env = {**os.environ, "BENCH_NO_INSTALL": "1", "BENCH_IMPORT_ROWS": "2000"}  # the import's shape, not its scale
    env.pop("DJANGO_SETTINGS_MODULE", None)
    argv = ["bin/bench", "200", "--database-url", url, "--redis-url", os.environ["REDIS_URL"]]
    argv += ["--output", str(output), "--samples", "3", "--admin-samples", "1", "--budget", "3"]
    argv += ["--duration", "1", "--rate", "20", "--jobs", "1"]
    result = subprocess.run(
        argv, cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert result.returncode == 0, result.stderr[-4000:]
    text = output.read_text()

    for heading in ("Machine", "PostgreSQL", "Scale: 200 companies", "Seeding"):
        assert heading in text
    requests = _table(text, "Requests")
    assert len(requests) == len(bench.API_ROWS)
    assert all(len(row) == 9 for row in requests)
    by_label = {row[0]: row for row in requests}
    page1 = by_label["companies page 1"]
    assert re.fullmatch(r"[\d.]+", page1[1]) and page1[4].isdigit()  # p50 measured, queries counted
    assert page1[5] != "—" and page1[8] in ("met", "**not met**")  # plain SQL timed, goal judged
    assert any(label.startswith("companies by `nextCursor`") for label in by_label)
    assert any(label.startswith("admin `/admin/crm/company/`") for label in by_label)
    assert all(row[8] in ("met", "**not met**", "n/a", "—") for row in requests)

    load = _table(text, "Load: companies page 1")
    assert len(load) == len(bench.LOAD_ROWS)
    assert all(row[2].replace(",", "").isdigit() and int(row[2].replace(",", "")) > 0 for row in load)
    shares = _table(text, "Where a page 1 request spends its time")
    assert any(row[0].startswith("API key authentication") for row in shares)
    assert all(row[1].endswith(" %") for row in shares)  # measured in this run, not a fixed text
    assert "## Goals not met, and why" in text
    assert (docs.read_bytes() if docs.exists() else None) == before
