"""The custom field rows of `bin/bench` (issue 23): measured on the large entity, back to back.

1. Companies page 1 with 10 custom fields (5 of them set on every company) against the same page
   with the definitions hidden: phases with / without / with, `SAMPLES` requests each; the two
   "with" phases are pooled, so load that drifts during the phases weighs on both sides.
2. `cf.tier=<option>` (an option held by one company in five) page 1 against `role=customer`
   page 1, interleaved.
3. `POST /companies` with 10 custom field values against one without, interleaved (the created
   companies are deleted afterwards, so the data set stays as seeded).

The fields are defined once per data set through the service (`crm.services.custom_fields`) and
the values written with one UPDATE, then the table is analysed; later runs reuse them.
"""

from __future__ import annotations

import http.client
import json
import statistics
import time
from collections.abc import Callable

KEYS = ("tier", "code", "seats", "renewal", "vip", "markets", "site", "billing", "signed_at", "budget")
OPTIONS = [{"value": f"o{i}", "label": f"Option {i}"} for i in range(5)]
CREATE_PREFIX = "Bench CF create "
GOALS = {"page": 1.2, "filter": 1.3, "create": 1.3}


def _request(port: int, method: str, path: str, key: str, body: dict | None = None) -> tuple[int, float]:
    headers = {"Accept": "application/json", "Authorization": f"Bearer {key}"}
    payload = None
    if body is not None:
        payload = json.dumps(body)
        headers["Content-Type"] = "application/json"
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    return response.status, (time.perf_counter() - started) * 1000


def ensure_fields(connect: Callable, url: str, entity: str) -> dict[str, str]:
    """The 10 company fields of `entity` ({key: storage key}); defined and filled on first use."""
    from django.db import transaction

    from axiomatic.models import Entity
    from axiomatic.rls import bypass_rls
    from crm.models import CustomField
    from crm.services.custom_fields import custom_field_create

    with transaction.atomic(), bypass_rls("bench: custom fields of the large entity"):
        existing = {f.key: f.storage_key for f in CustomField.objects.filter(entity_id=entity, object_type="company")}
        if set(KEYS) <= set(existing):
            return existing
        owner = Entity.objects.get(pk=entity)
        kinds = {
            "tier": ("select", OPTIONS),
            "markets": ("multiselect", OPTIONS),
            "code": ("text", None),
            "seats": ("number", None),
            "renewal": ("date", None),
            "vip": ("boolean", None),
            "site": ("url", None),
            "billing": ("email", None),
            "signed_at": ("datetime", None),
            "budget": ("currency", None),
        }
        for key in KEYS:
            if key not in existing:
                kind, options = kinds[key]
                field = custom_field_create(
                    entity=owner, object_type="company", key=key, label=key.title(), type=kind, options=options
                )
                existing[key] = field.storage_key
    k = existing
    with connect(url, autocommit=True) as conn:
        conn.execute("SET statement_timeout = 0")
        conn.execute(
            "UPDATE crm_company SET custom_fields = custom_fields || jsonb_build_object("
            "%s::text, 'o' || (abs(hashtext(id::text)) %% 5), %s::text, 'C-' || left(id::text, 8), "
            "%s::text, (abs(hashtext(id::text)) %% 1000)::text, "
            "%s::text, to_char(date '2026-01-01' + abs(hashtext(id::text)) %% 365, 'YYYY-MM-DD'), "
            "%s::text, abs(hashtext(id::text)) %% 2 = 0) WHERE entity_id = %s",
            [k["tier"], k["code"], k["seats"], k["renewal"], k["vip"], entity],
        )
        conn.execute("VACUUM (ANALYZE) crm_company")
    return existing


def _hide(entity: str, other: str, *, hidden: bool) -> None:
    """Move the definitions to `other` (hidden) or back, as a definition write would: the shared
    cache moves to a new generation, so the app's workers read them again."""
    from django.db import transaction

    from axiomatic.rls import bypass_rls
    from crm.models import CustomField
    from crm.selectors.custom_fields import definitions_changed

    source, target = (entity, other) if hidden else (other, entity)
    with transaction.atomic(), bypass_rls("bench: hide custom fields"):
        CustomField.objects.filter(entity_id=source, object_type="company", key__in=KEYS).update(entity_id=target)
        definitions_changed(entity)
        definitions_changed(other)


def measure(*, port: int, key: str, entity: str, other: str, connect: Callable, url: str, samples: int) -> dict:
    """The three comparisons (p50 ms of each side and their ratio)."""
    ensure_fields(connect, url, entity)
    page = f"/api/crm/companies?entityId={entity}"
    results: dict[str, list[float]] = {}

    def run(named: dict[str, Callable[[], tuple[int, float]]], rounds: int) -> None:
        for get in named.values():
            get()
            get()
        for _ in range(rounds):
            for name, get in named.items():
                status, ms = get()
                if status >= 400:
                    raise RuntimeError(f"custom field bench: {name} answered {status}")
                results.setdefault(name, []).append(ms)

    def get(path: str) -> Callable[[], tuple[int, float]]:
        return lambda: _request(port, "GET", path, key)

    run({"page_with": get(page)}, samples)
    _hide(entity, other, hidden=True)
    try:
        run({"page_without": get(page)}, samples)
    finally:
        _hide(entity, other, hidden=False)
    run({"page_with": get(page)}, samples)
    run({"role": get(page + "&role=customer"), "cf_eq": get(page + "&cf.tier=o3")}, samples)

    values = {
        "tier": "o1",
        "code": "N-1",
        "seats": 12,
        "renewal": "2027-01-01",
        "vip": True,
        "markets": ["o1", "o2"],
        "site": "https://example.com",
        "billing": "billing@example.com",
        "signed_at": "2026-01-01T10:00:00Z",
        "budget": {"currency": "EUR", "amount": "10"},
    }

    def create(with_values: bool) -> Callable[[], tuple[int, float]]:
        def post() -> tuple[int, float]:
            body: dict = {"name": f"{CREATE_PREFIX}{time.time_ns()}"}
            if with_values:
                body["customFields"] = dict(values, code=f"N-{time.time_ns()}")
            return _request(port, "POST", page, key, body)

        return post

    try:
        run({"create_plain": create(False), "create_cf": create(True)}, samples)
    finally:
        with connect(url, autocommit=True) as conn:
            conn.execute("DELETE FROM crm_company WHERE entity_id = %s AND name LIKE %s", [entity, CREATE_PREFIX + "%"])
    p50 = {name: statistics.median(values) for name, values in results.items()}
    return {
        "page": (p50["page_with"], p50["page_without"]),
        "filter": (p50["cf_eq"], p50["role"]),
        "create": (p50["create_cf"], p50["create_plain"]),
        "samples": samples,
    }


def section(measured: dict | None) -> str:
    """The report's "Custom fields" section (empty when not measured)."""
    if not measured:
        return ""
    labels = {
        "page": ("companies page 1 with 10 custom fields", "the same page without them"),
        "filter": ("`cf.tier=o3` page 1 (one company in five)", "`role=customer` page 1"),
        "create": ("`POST /companies` with 10 custom field values", "`POST /companies` without"),
    }
    lines = [
        "## Custom fields",
        "",
        "The large entity's companies have 10 custom fields, 5 of them set on every company "
        f"(`bench/custom_fields.py`; {measured['samples']} samples per side, measured back to back).",
        "",
        "| Request | p50 ms | Compared with | p50 ms | Ratio | Goal | Verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, (mine, other) in ((n, measured[n]) for n in ("page", "filter", "create")):
        ratio = mine / other if other else float("inf")
        verdict = "met" if ratio <= GOALS[name] else "**not met**"
        lines.append(
            f"| {labels[name][0]} | {mine:.1f} | {labels[name][1]} | {other:.1f} | {ratio:.2f} | "
            f"≤ {GOALS[name]:g} | {verdict} |"
        )
    return "\n".join(lines) + "\n"
