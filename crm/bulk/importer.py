"""Applying a stored CSV import in committed chunks (run by the `crm.run_import` Celery task).

Each chunk of `IMPORT_CHUNK_ROWS` rows is one transaction that holds the job row locked, writes
the rows through the bulk engine, stores their errors and advances the job's counters and
checkpoint (the byte offset after the chunk's last row). So the checkpoint and the writes commit
or vanish together: a worker killed anywhere resumes after the last committed chunk, and no row
is applied twice or lost. A dry run writes the chunk inside a savepoint it rolls back, so its
counts are exactly what the real run would count, and nothing (not even a change) stays.

Rows become API bodies here: cells are trimmed, empty cells left out (or cleared with
`clearEmpty` on updates), integers and booleans turned into JSON types for the serializer, and
the link columns (`companyDomain`, `companyName`, `contactEmail`) resolved set-based per chunk.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models.functions import Lower
from django.utils import timezone
from rest_framework import serializers as drf

from axiomatic import errors
from axiomatic.api.serializers import to_camel
from crm.bulk.engine import UPSERT, BulkRequest, BulkWriter, Item, Options, _Rollback
from crm.models import Company, Contact, Import, ImportRowError
from crm.selectors.custom_fields import definitions_for
from crm.services.actors import Actor
from crm.services.companies import DOMAIN_MESSAGE, company_domain_normalise
from crm.services.contacts import contact_email_normalise
from crm.services.imports import import_claim, read_records
from crm.services.pipeline import stage_resolve

_INTEGER = re.compile(r"^[+-]?[0-9]+$")
_TRUE, _FALSE = {"true", "yes", "y", "1"}, {"false", "no", "n", "0"}
LINK_COLUMNS = {"companyDomain", "companyName", "contactEmail"}


@dataclass
class RunResult:
    state: str  # idle | continue | finished
    token: str | None = None


@dataclass
class _Row:
    number: int
    cells: list[str]
    body: dict
    clear: tuple[str, ...] = ()
    links: dict | None = None
    errors: list | None = None  # [(column, message)]

    def error(self, column: str, message: str) -> None:
        self.errors = [*(self.errors or []), (column, message)]


def _actor(job: Import) -> Actor:
    user = job.created_by
    if job.actor_type == "apiKey":
        return Actor(type="apiKey", id=job.actor_id, name=f"Import {job.file_name}", user=user)
    if user is not None:
        return Actor.for_user(user)
    return Actor.system()


class Importer:
    """Turns rows into items for the bulk engine and counts what became of them."""

    def __init__(self, job: Import):
        self.job = job
        self.options = job.options
        self.mapping: list[str | None] = self.options["mapping"]
        self.headers: list[str] = job.headers
        self.column_of = {field: header for header, field in zip(self.headers, self.mapping, strict=True) if field}
        user = job.created_by
        self.request = BulkRequest(entity=job.entity, user=user)
        self.actor = _actor(job)
        match_on = self.options["matchOn"]
        self.writer = BulkWriter(
            object_type=job.object_type,
            request=self.request,
            actor=self.actor,
            options=Options(operation=UPSERT, match_on=match_on, on_match=self.options["onMatch"]),
            responses=False,
        )
        self.types = _json_types(self.writer.adapter.serializer_class)
        self.custom_types = {d.key: d.type for d in definitions_for(entity=job.entity_id, object_type=job.object_type)}
        self._stages: dict[str, object] = {}

    # --- rows → bodies ------------------------------------------------------------------------------

    def row(self, number: int, cells: list[str]) -> _Row:
        row = _Row(number, cells, {})
        if len(cells) != len(self.headers):
            row.error("", f"The row has {len(cells)} cells; the header row has {len(self.headers)}.")
            return row
        clear, links = [], {}
        for field, cell in zip(self.mapping, cells, strict=True):
            if field is None:
                continue
            value = cell.strip()
            if field.startswith("customFields."):
                if value:
                    key = field.split(".", 1)[1]
                    row.body.setdefault("customFields", {})[key] = self._custom_typed(key, value)
                elif self.options.get("clearEmpty"):
                    clear.append(field)
                continue
            if field in LINK_COLUMNS:
                if value:
                    links[field] = value
                continue
            if not value:
                if field != "id" and self.options.get("clearEmpty"):
                    clear.append(field)
                continue
            row.body[field] = self._typed(field, value)
        if "id" in row.body:
            try:
                uuid.UUID(row.body["id"])
            except ValueError:
                row.error(self.column_of["id"], "Must be a valid UUID.")
            if self.options["matchOn"] != "id":
                row.body.pop("id")
        row.clear, row.links = tuple(clear), links
        return row

    def _custom_typed(self, key: str, value: str):
        """A cell as the JSON value a custom field takes: booleans, lists (`a; b` or JSON) and
        objects (JSON) converted, everything else as text (numbers and dates parse from text)."""
        kind = self.custom_types.get(key)
        if kind == "boolean" and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        if kind in ("multiselect", "currency") and value[:1] in "[{":
            try:
                return json.loads(value)
            except ValueError:
                return value
        if kind == "multiselect":
            return [part.strip() for part in value.split(";") if part.strip()]
        return value

    def _typed(self, field: str, value: str):
        kind = self.types.get(field)
        if kind == "integer" and _INTEGER.match(value):
            return int(value)
        if kind == "boolean" and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        return value

    def resolve_links(self, rows: list[_Row]) -> None:
        """companyDomain / companyName / contactEmail → companyId / contactId, set-based; missing
        companies are created when `createCompanies` (one bulk write), else the row fails."""
        entity = self.job.entity
        domains, names, emails = {}, {}, {}
        for row in rows:
            if row.errors:
                continue
            links = row.links or {}
            if "companyDomain" in links:
                try:
                    links["companyDomain"] = company_domain_normalise(links["companyDomain"])
                except errors.Invalid:
                    row.error(self.column_of["companyDomain"], DOMAIN_MESSAGE)
                    continue
                domains.setdefault(links["companyDomain"], []).append(row)
            elif "companyName" in links:
                names.setdefault(links["companyName"].lower(), []).append(row)
            if "contactEmail" in links:
                emails.setdefault(contact_email_normalise(links["contactEmail"]), []).append(row)
        companies = Company.objects.for_entity(entity)
        found_domains = dict(companies.filter(domain__in=list(domains)).values_list("domain", "pk")) if domains else {}
        found_names: dict = {}
        if names:
            for name, pk in (
                companies.annotate(lower_name=Lower("name"))
                .filter(lower_name__in=list(names))
                .order_by("name", "id")
                .values_list("lower_name", "pk")
            ):
                found_names.setdefault(name, pk)
        create = self.options.get("createCompanies") and self.job.object_type == "contact"
        missing_domains = [domain for domain in domains if domain not in found_domains]
        missing_names = [name for name in names if name not in found_names]
        if create and (missing_domains or missing_names):
            bodies = []
            for domain in missing_domains:
                given = next((r.links.get("companyName") for r in domains[domain] if r.links.get("companyName")), None)
                bodies.append({"name": given or domain, "domain": domain})
            for name in missing_names:
                bodies.append({"name": names[name][0].links["companyName"]})
            writer = BulkWriter(
                object_type="company",
                request=self.request,
                actor=self.actor,
                options=Options(operation="create"),
                responses=False,
            )
            made = writer.write([Item(index=index, body=body) for index, body in enumerate(bodies)])
            for item in made:
                if item.outcome == "created":
                    if item.body.get("domain"):
                        found_domains[item.body["domain"]] = item.instance.pk
                    else:
                        found_names[item.body["name"].lower()] = item.instance.pk
        for domain, holders in domains.items():
            for row in holders:
                if domain in found_domains:
                    row.body.setdefault("companyId", str(found_domains[domain]))
                else:
                    row.error(
                        self.column_of["companyDomain"], f"No company with domain {domain} exists in this entity."
                    )
        for name, holders in names.items():
            for row in holders:
                if name in found_names:
                    row.body.setdefault("companyId", str(found_names[name]))
                else:
                    row.error(
                        self.column_of["companyName"],
                        f"No company named {row.links['companyName']!r} exists in this entity.",
                    )
        if emails:
            found = dict(
                Contact.objects.for_entity(entity).filter(email__in=[e for e in emails if e]).values_list("email", "pk")
            )
            for email, holders in emails.items():
                for row in holders:
                    if email in found:
                        row.body.setdefault("contactId", str(found[email]))
                    else:
                        row.error(
                            self.column_of["contactEmail"], f"No contact with email {email} exists in this entity."
                        )
        if self.job.object_type == "lead":
            for row in rows:
                self._one_stage(row)

    def _one_stage(self, row: _Row) -> None:
        """An export carries both `stageId` and the stage's name: the name is dropped when it
        names the same stage (else the serializer's "either stageId or stage" stands)."""
        name, stage_id = row.body.get("stage"), row.body.get("stageId")
        if not (isinstance(name, str) and isinstance(stage_id, str)):
            return
        key = name.strip().lower()
        if key not in self._stages:
            self._stages[key] = stage_resolve(entity=self.job.entity, reference=name)
        stage = self._stages[key]
        if stage is not None and str(stage.pk) == stage_id.lower():
            del row.body["stage"]

    # --- a chunk --------------------------------------------------------------------------------------

    def apply(self, rows: list[_Row]) -> dict:
        """Write the rows (the caller's transaction); returns the counts and the error rows."""
        counts = {"created": 0, "updated": 0, "unchanged": 0, "skipped": 0, "failed": 0}
        failures: list[ImportRowError] = []
        try:
            with transaction.atomic():
                self.resolve_links(rows)
                good = [row for row in rows if not row.errors]
                items = [Item(index=row.number, body=row.body, clear=row.clear) for row in good]
                self.writer.write(items)
                if self.job.dry_run:
                    raise _Rollback
        except _Rollback:
            pass
        by_number = {item.index: item for item in items}
        for row in rows:
            item = by_number.get(row.number)
            if row.errors:
                counts["failed"] += 1
                failures += [self._error(row, column, message) for column, message in row.errors]
            elif item.outcome == "failed":
                counts["failed"] += 1
                failures += [self._error(row, column, message) for column, message in self._messages(item)]
            else:
                counts[item.outcome] += 1
        return {"counts": counts, "errors": failures}

    def _messages(self, item: Item) -> list[tuple[str, str]]:
        if item.details:
            return [(self._column(field), message) for field, messages in item.details.items() for message in messages]
        column = ""
        if item.status == 409:
            column = self._column(self.writer.adapter.unique[0] if self.writer.adapter.unique else "")
        elif item.status == 404:
            column = self._column("id")
        return [(column, item.error or "Invalid row.")]

    def _column(self, field: str) -> str:
        field = to_camel(field)
        if field in self.column_of:
            return self.column_of[field]
        if field == "companyId":
            return self.column_of.get("companyDomain") or self.column_of.get("companyName") or field
        if field == "contactId":
            return self.column_of.get("contactEmail") or field
        if field == "stageId":
            return self.column_of.get("stage") or field
        return field

    def _error(self, row: _Row, column: str, message: str) -> ImportRowError:
        return ImportRowError(
            entity_id=self.job.entity_id,
            job=self.job,
            row=row.number,
            column=column[:255],
            message=message,
            cells=row.cells,
        )


def _json_types(serializer_class) -> dict[str, str]:
    kinds = {}
    for name, field in serializer_class().fields.items():
        if isinstance(field, drf.BooleanField):
            kinds[name] = "boolean"
        elif isinstance(field, drf.IntegerField):
            kinds[name] = "integer"
    return kinds


# --- running a job ----------------------------------------------------------------------------------


def import_run(*, import_id, token: str | None, progress: Callable[[int], None] | None = None) -> RunResult:
    """Claim the job and apply chunks until it is done, stopped, or `IMPORT_RUN_SECONDS` are up
    (then the caller queues the continuation with the returned token). Call inside the job's
    `entity_scope`."""
    token = import_claim(import_id=import_id, token=token)
    if token is None:
        return RunResult("idle")
    job = Import.objects.select_related("entity", "created_by").get(pk=import_id)
    importer = Importer(job)
    records = read_records(job, start=job.checkpoint_offset)
    deadline = time.monotonic() + settings.IMPORT_RUN_SECONDS
    number = job.processed_rows
    while True:
        batch = []
        try:
            for record in records:
                batch.append(record)
                if len(batch) >= settings.IMPORT_CHUNK_ROWS:
                    break
        except errors.Invalid as exc:  # the file changed under us (checked at upload): stop with the reason
            _finish(job, token, status=Import.Status.FAILED, error=exc.message)
            return RunResult("finished")
        if not batch:
            _finish(job, token, status=Import.Status.SUCCEEDED)
            return RunResult("finished")
        with transaction.atomic():
            locked = Import.objects.select_for_update().get(pk=job.pk)
            if locked.status != Import.Status.RUNNING or str(locked.lease_token) != token:
                return RunResult("finished" if locked.status == Import.Status.CANCELLED else "idle")
            rows = [importer.row(number + index + 1, record.cells) for index, record in enumerate(batch)]
            result = importer.apply(rows)
            ImportRowError.objects.bulk_create(result["errors"])
            number += len(rows)
            counts = result["counts"]
            Import.objects.filter(pk=job.pk).update(
                processed_rows=number,
                checkpoint_offset=batch[-1].end,
                heartbeat_at=timezone.now(),
                **{name: getattr(locked, name) + value for name, value in counts.items()},
            )
        if progress is not None:
            progress(number)
        if time.monotonic() > deadline:
            return RunResult("continue", token)
        if settings.IMPORT_CHUNK_PAUSE_SECONDS:
            time.sleep(settings.IMPORT_CHUNK_PAUSE_SECONDS)


def _finish(job: Import, token: str, *, status: str, error: str | None = None) -> None:
    with transaction.atomic():
        Import.objects.filter(pk=job.pk, status=Import.Status.RUNNING, lease_token=token).update(
            status=status, finished_at=timezone.now(), error=error, lease_token=None, updated_at=timezone.now()
        )


__all__ = ["Importer", "RunResult", "import_run"]
