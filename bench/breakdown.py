"""Where one API request spends its time: `python -m bench.breakdown PATH KEY` (run by bin/bench).

The request is served in this process through Django's full handler (every middleware, DRF,
authentication, the page query, representation, rendering) by the test client, against the
benchmark's database and settings (`DJANGO_SETTINGS_MODULE` and the rest come from the
environment bin/bench gives its gunicorn). First `--samples` requests are timed plainly (ms per
request, in process, no network); then as many again under cProfile, whose cumulative times are
shared out among the parts below — the profiler slows every call alike, so the shares hold while
the absolute figures do not. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import pstats
import time

# (part, file suffix, function): the outermost call of each part of a request.
PARTS = [
    ("API key authentication (one query)", "apikeys/authentication.py", "authenticate"),
    ("the page query and its total (one query)", "axiomatic/api/pagination.py", "paginate_queryset"),
    ("representation of the rows", "axiomatic/api/fast.py", "to_representation"),
    ("JSON rendering", "axiomatic/api/fast.py", "render"),
]
WHOLE = ("django/core/handlers/base.py", "get_response")


def _cumulative(stats: pstats.Stats, suffix: str, name: str) -> float:
    total = 0.0
    for (filename, _line, function), (_cc, _nc, _tt, cumulative, _callers) in stats.stats.items():
        if function == name and filename.endswith(suffix):
            total += cumulative
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("key")
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()

    import django

    django.setup()
    logging.disable(logging.CRITICAL)  # the access log of every request is not the point here
    from django.test import Client

    client = Client(HTTP_AUTHORIZATION=f"Bearer {args.key}", SERVER_NAME="127.0.0.1")
    for _ in range(5):
        response = client.get(args.path)
        if response.status_code != 200:
            raise SystemExit(f"{args.path} answered {response.status_code}")
    started = time.perf_counter()
    for _ in range(args.samples):
        client.get(args.path)
    plain_ms = (time.perf_counter() - started) * 1000 / args.samples

    profile = cProfile.Profile()
    profile.enable()
    for _ in range(args.samples):
        client.get(args.path)
    profile.disable()
    stats = pstats.Stats(profile)
    whole = _cumulative(stats, *WHOLE) or 1.0
    shares = {label: _cumulative(stats, suffix, name) / whole for label, suffix, name in PARTS}
    shares["middleware, routing, DRF dispatch and the rest"] = max(0.0, 1 - sum(shares.values()))
    print(json.dumps({"path": args.path, "ms_per_request": plain_ms, "shares": shares}))


if __name__ == "__main__":
    main()
