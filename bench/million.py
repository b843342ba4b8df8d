"""The million-row import, measured apart from `bin/bench` (it takes minutes):
`python -m bench.million --database-url URL` imports 1,000,000 new contacts (first name, last
name and email: a million rows must fit the import's 50 MB limit, so the file is narrow) with
`manage.py import_csv` in one process (one worker) into a scratch database, and prints its wall
time and a memory curve: every 15 s, the process's resident memory and the import's
`processedRows`. The tasks the import queues go to a scratch queue (no worker).

Run it with the app's environment (SECRET_KEY, FIELD_ENCRYPTION_KEYS, REDIS_URL, DEBUG=0).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROWS = 1_000_000
SAMPLE_SECONDS = 15.0


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _processed(database_url: str) -> int:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT processed_rows FROM crm_import ORDER BY created_at DESC LIMIT 1").fetchone()
    return row[0] if row else 0


def _narrow_csv(path: Path, rows: int) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["First Name", "Last Name", "Email"])
        writer.writerows([f"F{n}", f"L{n}", f"p{n}@ex.io"] for n in range(rows))


def measure(env: dict, database_url: str, rows: int = ROWS) -> dict:
    from bench.bulk import drop_queue, scratch_entity

    with (
        scratch_entity(env, database_url, suffix="_million", label="Million bench") as (work, created, manage),
        tempfile.TemporaryDirectory(prefix="bench-million-") as folder,
    ):
        path = Path(folder) / "contacts.csv"
        _narrow_csv(path, rows)
        command = [*manage, "import_csv", str(path), "--entity", created["entityId"], "--object-type", "contact"]
        command += ["--match-on", "email", "--no-progress"]
        curve: list[dict] = []
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, env=work, stdout=subprocess.PIPE, text=True)
        done = threading.Event()

        def sample() -> None:
            while not done.wait(SAMPLE_SECONDS):
                try:
                    curve.append(
                        {
                            "seconds": round(time.perf_counter() - started),
                            "rssMb": round(_rss_mb(process.pid)),
                            "processedRows": _processed(work["DATABASE_URL"]),
                        }
                    )
                except (OSError, ValueError):
                    return

        threading.Thread(target=sample, daemon=True).start()
        out, _ = process.communicate()
        seconds = time.perf_counter() - started
        done.set()
        job = json.loads(out.strip().splitlines()[-1])
        return {"rows": rows, "seconds": seconds, "job": job, "curve": curve, "queued": drop_queue(work)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--rows", type=int, default=ROWS)
    args = parser.parse_args(argv)
    env = {**os.environ, "DEBUG": "0"}
    env.setdefault("DJANGO_SETTINGS_MODULE", "axiomatic.settings")
    print(json.dumps(measure(env, args.database_url, args.rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
