"""CSV imports: accepting a file, guessing the column mapping, queueing, cancelling, reading back.

Why it is shaped this way:

- Everything that can be wrong with the upload as a whole is refused at once (400/413, nothing
  queued): not UTF-8 (naming the line), not CSV, too big, too many rows, no data rows, a mapping
  onto an unknown field or onto one field twice. The worker then only meets row-level problems,
  which it counts and lists without stopping.
- The file is streamed into `ImportFileSlice` rows (1 MB each) while it is checked, so the upload
  never sits in memory whole and any worker on any host can read it (see `crm.models.imports`).
- One import runs per entity at a time: `import_claim` takes a per-entity advisory lock and
  leaves a job `queued` while another of the entity runs; the one finishing kicks the next.
- The worker (`crm.bulk.importer`) is found by task name, so this module stays below the API.

The fields a column can map to are registered by the API layer at start-up
(`register_import_fields`), from the very serializers that validate the rows.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from axiomatic import errors
from axiomatic.db import is_postgres
from axiomatic.models import Entity, User
from axiomatic.rls import entity_scope
from crm.models import Import, ImportFileSlice, ImportRowError

logger = logging.getLogger("crm.imports")

OBJECT_TYPES = ("company", "contact", "lead")
MATCH_ON = {"company": ("domain", "id", "none"), "contact": ("email", "id", "none"), "lead": ("none", "id")}
ON_MATCH = ("update", "skip")
SLICE_BYTES = 1024 * 1024
RUN_TASK = "crm.run_import"
ERROR_COLUMN = "error"


class ImportTooLarge(errors.Invalid):
    """The upload is over `IMPORT_MAX_BYTES` (the API answers 413)."""


# --- the fields a column can map to ------------------------------------------------------------------


@dataclass(frozen=True)
class ImportField:
    """A target of a column: an API field name, its label, other names people use for it."""

    name: str
    label: str
    aliases: tuple[str, ...] = ()


@dataclass
class _Catalogue:
    fields: list[ImportField] = field(default_factory=list)
    read_only: set[str] = field(default_factory=set)  # exported but never imported (fullName, createdAt...)


_catalogues: dict[str, _Catalogue] = {}


def register_import_fields(object_type: str, fields: list[ImportField], *, read_only: Iterable[str] = ()) -> None:
    """Declare what an import of `object_type` can write (called by the API layer at start-up)."""
    _catalogues[object_type] = _Catalogue(list(fields), set(read_only))


def import_fields(object_type: str) -> list[ImportField]:
    return list(_catalogues[object_type].fields)


def header_key(text: str) -> str:
    """`First Name`, `first_name`, `FIRSTNAME` and `firstName` compare equal."""
    return re.sub(r"[\s_\-]+", "", text or "").lower()


def custom_import_fields(*, entity, object_type: str) -> list[ImportField]:
    """The entity's custom fields of `object_type` as import targets (`customFields.<key>`, matched
    by key or label)."""
    from crm.selectors.custom_fields import definitions_for

    return [
        ImportField(f"customFields.{d.key}", d.label, (d.key,))
        for d in definitions_for(entity=entity, object_type=object_type)
    ]


def mapping_resolve(
    object_type: str, headers: list[str], explicit: dict | None = None, extra: Iterable[ImportField] = ()
) -> list[str | None]:
    """The field of each column: the explicit mapping first (a field name or null to ignore), then a
    guess by field name, label or alias, case- and space-insensitively; read-only and unknown
    columns are ignored. An explicit unknown field, an unknown column or two columns onto one field
    → `Invalid`."""
    catalogue = _catalogues[object_type]
    catalogue = _Catalogue([*catalogue.fields, *extra], catalogue.read_only)
    by_key: dict[str, str] = {}
    for item in catalogue.fields:
        for name in (item.name, item.label, *item.aliases):
            by_key.setdefault(header_key(name), item.name)
    known = {item.name for item in catalogue.fields}
    explicit = explicit or {}
    unknown_columns = sorted(set(explicit) - set(headers))
    if unknown_columns:
        raise errors.Invalid(
            f"The mapping names columns the file does not have: {', '.join(unknown_columns)}.", field="mapping"
        )
    result: list[str | None] = []
    for header in headers:
        if header in explicit:
            target = explicit[header]
            if target is not None and (not isinstance(target, str) or target not in known):
                raise errors.Invalid(
                    f"Column {header!r} is mapped to {target!r}, which is not a field of a {object_type} "
                    "that an import can write.",
                    field="mapping",
                )
            result.append(target)
        else:
            result.append(by_key.get(header_key(header)))
    explicit_targets = [target for header, target in zip(headers, result, strict=True) if header in explicit and target]
    twice = sorted({target for target in explicit_targets if explicit_targets.count(target) > 1})
    if twice:
        raise errors.Invalid(f"Several columns are mapped onto {', '.join(twice)}.", field="mapping")
    taken = set(explicit_targets)
    for index, (header, target) in enumerate(zip(headers, result, strict=True)):
        if header in explicit or target is None:
            continue
        if target in taken:
            result[index] = None  # a guess never takes a field twice: the first column keeps it
        else:
            taken.add(target)
    return result


# --- reading the stored file --------------------------------------------------------------------------


def _split_lines(chunks: Iterable[bytes], start: int) -> Iterator[tuple[bytes, int, int]]:
    """(raw line with its end, offset after it, physical line number) from byte chunks."""
    carry = b""
    offset = start
    number = 0
    for chunk in chunks:
        data = carry + chunk
        lines = data.split(b"\n")
        carry = lines.pop()
        for line in lines:
            offset += len(line) + 1
            number += 1
            yield line + b"\n", offset, number
    if carry:
        offset += len(carry)
        number += 1
        yield carry, offset, number


def _decode(raw: bytes, number: int, *, first: bool) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise errors.Invalid(f"The file is not valid UTF-8 (line {number}).", field="file") from None
    if first and text.startswith("\ufeff"):
        text = text[1:]
    if "\x00" in text:
        raise errors.Invalid(f"The file contains a NUL character (line {number}).", field="file")
    return text


def _slices(job: Import, start: int) -> Iterator[bytes]:
    first = start // SLICE_BYTES
    skip = start % SLICE_BYTES
    numbers = list(
        ImportFileSlice.objects.filter(job=job, number__gte=first).order_by("number").values_list("number", flat=True)
    )
    for number in numbers:
        data = bytes(ImportFileSlice.objects.filter(job=job, number=number).values_list("data", flat=True).get())
        if number == first and skip:
            data = data[skip:]
        yield data


@dataclass
class Record:
    cells: list[str]
    end: int  # byte offset after the record
    line: int  # physical line where it starts (from the read's start)


def read_records(job: Import, *, start: int = 0) -> Iterator[Record]:
    """The CSV records of the stored file from byte `start` (a record boundary), blank lines
    skipped, each with the offset after it: the worker's checkpoint."""
    state = {"end": start, "line": 0}

    def lines() -> Iterator[str]:
        for raw, end, number in _split_lines(_slices(job, start), start):
            state["end"], state["line"] = end, number
            yield _decode(raw, number, first=start == 0 and number == 1)

    reader = csv.reader(lines())
    for cells in reader:
        if not cells or cells == [""]:
            continue
        yield Record(cells, state["end"], state["line"])


def import_preview(job: Import, *, rows: int = 5) -> list[list[str]]:
    """The first data rows as stored (for the page's mapping step)."""
    found = []
    for record in read_records(job, start=job.checkpoint_offset if job.processed_rows == 0 else _data_start(job)):
        found.append(record.cells)
        if len(found) >= rows:
            break
    return found


def _data_start(job: Import) -> int:
    return int(job.options.get("dataStart", 0))


# --- accepting an upload ------------------------------------------------------------------------------


@dataclass
class ImportRequest:
    """What `POST /imports` (or the page, or the command) asks for."""

    object_type: str
    mapping: dict | None = None
    match_on: str | None = None
    on_match: str = "update"
    dry_run: bool = False
    clear_empty: bool = False
    create_companies: bool = False


def _check_request(request: ImportRequest) -> str:
    if request.object_type not in OBJECT_TYPES:
        raise errors.Invalid(f"objectType must be one of {', '.join(OBJECT_TYPES)}.", field="objectType")
    match_on = request.match_on or MATCH_ON[request.object_type][0]
    if match_on not in MATCH_ON[request.object_type]:
        raise errors.Invalid(
            f"matchOn for a {request.object_type} import must be one of {', '.join(MATCH_ON[request.object_type])}.",
            field="matchOn",
        )
    if request.on_match not in ON_MATCH:
        raise errors.Invalid("onMatch must be update or skip.", field="onMatch")
    if request.mapping is not None and not (
        isinstance(request.mapping, dict) and all(isinstance(key, str) for key in request.mapping)
    ):
        raise errors.Invalid("mapping must be a JSON object of column → field (or null).", field="mapping")
    return match_on


def _store(job: Import, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Pass the chunks through, writing them to 1 MB slices as they go (one INSERT per slice)."""
    buffer = bytearray()
    number = 0
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= SLICE_BYTES:
            ImportFileSlice.objects.create(
                entity_id=job.entity_id, job=job, number=number, data=bytes(buffer[:SLICE_BYTES])
            )
            del buffer[:SLICE_BYTES]
            number += 1
        yield chunk
    if buffer:
        ImportFileSlice.objects.create(entity_id=job.entity_id, job=job, number=number, data=bytes(buffer))


def _limited(chunks: Iterable[bytes]) -> Iterator[bytes]:
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > settings.IMPORT_MAX_BYTES:
            raise ImportTooLarge(f"The file is larger than {settings.IMPORT_MAX_BYTES // (1024 * 1024)} MB.")
        yield chunk


@transaction.atomic
def import_create(
    *,
    entity: Entity,
    user: User | None,
    actor: tuple[str, str | None],
    chunks: Iterable[bytes],
    file_name: str,
    request: ImportRequest,
    kick: bool = True,
    staged: bool = False,
) -> Import:
    """Check and store an uploaded CSV and queue its import (after commit). `actor` is who the
    change feed will name (`axiomatic.changes.actor_ref` of the request); `kick=False` leaves the
    running to the caller (the operator command applies it in its own process)."""
    match_on = _check_request(request)
    job = Import.objects.create(
        entity=entity,
        object_type=request.object_type,
        file_name=(file_name or "import.csv")[:255],
        dry_run=request.dry_run,
        staged=staged,
        created_by=user,
        actor_type=actor[0],
        actor_id=actor[1],
        options={},
    )
    headers: list[str] | None = None
    rows = 0
    data_start = 0
    size = 0
    state = {"end": 0, "line": 0}

    def counted(chunks: Iterable[bytes]) -> Iterator[bytes]:
        nonlocal size
        for chunk in chunks:
            size += len(chunk)
            yield chunk

    def lines() -> Iterator[str]:
        for raw, end, number in _split_lines(_store(job, counted(_limited(chunks))), 0):
            state["end"], state["line"] = end, number
            yield _decode(raw, number, first=number == 1)

    try:
        for cells in csv.reader(lines()):
            if not cells or cells == [""]:
                continue
            if headers is None:
                headers, data_start = [cell.strip() for cell in cells], state["end"]
                continue
            rows += 1
            if rows > settings.IMPORT_MAX_ROWS:
                raise errors.Invalid(f"The file has more than {settings.IMPORT_MAX_ROWS} data rows.", field="file")
    except csv.Error as exc:
        raise errors.Invalid(f"The file is not valid CSV (line {state['line']}): {exc}.", field="file") from None
    if headers is None or not any(headers):
        raise errors.Invalid("The file is empty: it needs a header row and at least one data row.", field="file")
    if rows == 0:
        raise errors.Invalid("The file has a header row but no data rows.", field="file")
    blank = [str(index + 1) for index, header in enumerate(headers) if not header]
    if len(set(headers) - {""}) != len([header for header in headers if header]):
        raise errors.Invalid("The header row names a column twice.", field="file")
    extra = custom_import_fields(entity=entity, object_type=request.object_type)
    mapping = mapping_resolve(request.object_type, headers, request.mapping, extra)
    job.headers = headers
    job.total_rows = rows
    job.file_size = size
    job.checkpoint_offset = data_start
    job.options = {
        "mapping": mapping,
        "matchOn": match_on,
        "onMatch": request.on_match,
        "clearEmpty": request.clear_empty,
        "createCompanies": request.create_companies,
        "dataStart": data_start,
        "blankColumns": blank,
    }
    job.save()
    entity_id = entity.pk
    if kick and not staged:
        transaction.on_commit(lambda: import_kick(entity_id=entity_id), robust=True)
    return job


def import_copy(
    *, job: Import, dry_run: bool, user: User | None, actor: tuple[str, str | None], kick: bool = True
) -> Import:
    """A new job over the same stored file and options (the page's "run it" after a dry run)."""
    with transaction.atomic():
        copy = Import.objects.create(
            entity_id=job.entity_id,
            object_type=job.object_type,
            file_name=job.file_name,
            file_size=job.file_size,
            options=job.options,
            headers=job.headers,
            dry_run=dry_run,
            total_rows=job.total_rows,
            created_by=user,
            actor_type=actor[0],
            actor_id=actor[1],
            checkpoint_offset=_data_start(job),
        )
        table = ImportFileSlice._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (entity_id, job_id, number, data) "
                f"SELECT entity_id, %s, number, data FROM {table} WHERE job_id = %s",
                [copy.pk, job.pk],
            )
        if kick:
            entity_id = job.entity_id
            transaction.on_commit(lambda: import_kick(entity_id=entity_id), robust=True)
    return copy


def import_start(
    *, job: Import, mapping: dict, request: ImportRequest, user: User | None, actor: tuple[str, str | None]
) -> Import:
    """Confirm a staged upload's mapping and options and queue it (the page's mapping step). A job
    that already ran is copied instead (a dry run first, then the real thing over the same file)."""
    match_on = _check_request(request)
    extra = custom_import_fields(entity=job.entity_id, object_type=job.object_type)
    resolved = mapping_resolve(job.object_type, job.headers, mapping, extra)
    with transaction.atomic():
        locked = Import.objects.select_for_update().get(pk=job.pk)
        if not locked.staged:
            locked = import_copy(job=locked, dry_run=request.dry_run, user=user, actor=actor, kick=False)
        locked.options = {
            **locked.options,
            "mapping": resolved,
            "matchOn": match_on,
            "onMatch": request.on_match,
            "clearEmpty": request.clear_empty,
            "createCompanies": request.create_companies,
        }
        locked.dry_run = request.dry_run
        locked.staged = False
        locked.save(update_fields=["options", "dry_run", "staged", "updated_at"])
        entity_id = locked.entity_id
        transaction.on_commit(lambda: import_kick(entity_id=entity_id), robust=True)
    return locked


# --- running: claims, kicks, cancelling -------------------------------------------------------------


def _entity_lock(entity_id) -> None:
    """Serialise claims of one entity's imports (transaction-scoped)."""
    if is_postgres(connection):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"crm.import:{entity_id}"])


def _stale_before():
    return timezone.now() - timedelta(seconds=settings.IMPORT_STALE_SECONDS)


def import_claim(*, import_id, token: str | None) -> str | None:
    """Take the job for this worker run; returns its lease token, or None when it is not ours to
    run: finished or cancelled, held by a live run, or waiting behind another import of its entity.

    A continuation passes its token back; a run whose heartbeat is older than
    `IMPORT_STALE_SECONDS` (its worker died) is taken over and resumes after its last chunk."""
    with transaction.atomic():
        job = Import.objects.filter(pk=import_id).values("entity_id").first()
        if job is None:
            return None
        _entity_lock(job["entity_id"])
        job = Import.objects.select_for_update().get(pk=import_id)
        if job.staged:
            return None
        if job.status == Import.Status.RUNNING:
            live = job.heartbeat_at is not None and job.heartbeat_at >= _stale_before()
            if token is not None and str(job.lease_token) == token:
                pass
            elif live:
                return None
        elif job.status == Import.Status.QUEUED:
            busy = (
                Import.objects.filter(
                    entity_id=job.entity_id, status=Import.Status.RUNNING, heartbeat_at__gte=_stale_before()
                )
                .exclude(pk=job.pk)
                .exists()
            )
            if busy:
                return None
            older = (
                Import.objects.filter(
                    entity_id=job.entity_id, staged=False, status__in=(Import.Status.QUEUED, Import.Status.RUNNING)
                )
                .exclude(pk=job.pk)
                .filter(created_at__lt=job.created_at)
                .order_by("created_at")
                .first()
            )
            if older is not None:
                return None  # first come, first served: the older one is kicked instead
        else:
            return None
        new_token = token if token is not None and str(job.lease_token) == token else str(uuid.uuid4())
        now = timezone.now()
        Import.objects.filter(pk=job.pk).update(
            status=Import.Status.RUNNING,
            lease_token=new_token,
            heartbeat_at=now,
            started_at=job.started_at or now,
        )
        return new_token


def import_next(*, entity_id) -> Import | None:
    """The job of the entity that should run now: a stalled running one, else the oldest queued."""
    running = Import.objects.filter(entity_id=entity_id, status=Import.Status.RUNNING).order_by("created_at").first()
    if running is not None:
        return running
    return (
        Import.objects.filter(entity_id=entity_id, status=Import.Status.QUEUED, staged=False)
        .order_by("created_at")
        .first()
    )


def import_kick(*, entity_id) -> bool:
    """Queue the worker for the entity's next import (never raises; the rows are the truth and
    `resume_stalled_imports` finds anything a lost message left behind)."""
    from celery import current_app

    with entity_scope(entity_id):  # after a commit: the request's entity setting has ended with it
        job = import_next(entity_id=entity_id)
    if job is None:
        return False
    try:
        # By name (this module stays below the worker's code); eager without a broker (the demo).
        current_app.tasks[RUN_TASK].apply_async((str(job.pk), None))
    except Exception as exc:
        logger.warning("Could not queue import %s (%s); the periodic check will", job.pk, type(exc).__name__)
        return False
    return True


def imports_stalled() -> list:
    """Entities with a queued import and none running, or a running one whose worker went quiet
    (read across entities by the periodic check, under `bypass_rls`)."""
    stale = Import.objects.filter(status=Import.Status.RUNNING, heartbeat_at__lt=_stale_before())
    waiting = Import.objects.filter(status=Import.Status.QUEUED, staged=False, created_at__lt=_stale_before())
    return sorted({*stale.values_list("entity_id", flat=True), *waiting.values_list("entity_id", flat=True)}, key=str)


def import_cancel(*, job: Import) -> Import:
    """Stop the job: a queued one never starts, a running one stops before its next chunk (rows
    already applied stay). A finished job is left as it is (409)."""
    with transaction.atomic():
        locked = Import.objects.select_for_update().get(pk=job.pk)
        if locked.status not in (Import.Status.QUEUED, Import.Status.RUNNING):
            raise errors.Conflict(f"The import has already {locked.status}; there is nothing to cancel.")
        locked.status = Import.Status.CANCELLED
        locked.finished_at = timezone.now()
        locked.lease_token = None
        locked.save(update_fields=["status", "finished_at", "lease_token", "updated_at"])
        entity_id = locked.entity_id
        transaction.on_commit(lambda: import_kick(entity_id=entity_id), robust=True)
    return locked


# --- the error file ----------------------------------------------------------------------------------


def import_errors_csv(job: Import) -> Iterator[str]:
    """The failed rows as uploaded plus an `error` column (every message of the row), streamed."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        value = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return value

    writer.writerow([*job.headers, ERROR_COLUMN])
    yield flush()
    last = None
    current: list | None = None
    messages: list[str] = []
    rows = ImportRowError.objects.filter(job=job).order_by("row", "id").values_list("row", "column", "message", "cells")
    for row, column, message, cells in rows.iterator(chunk_size=2000):
        if row != last and current is not None:
            writer.writerow([*current, "; ".join(messages)])
            yield flush()
            messages = []
        last, current = row, cells
        messages.append(f"{column}: {message}" if column else message)
    if current is not None:
        writer.writerow([*current, "; ".join(messages)])
        yield flush()


def import_summary(job: Import) -> dict:
    """The job as `GET /imports/{id}` shows it (for the operator command's JSON line)."""

    def when(value):
        return value.isoformat().replace("+00:00", "Z") if value else None

    return {
        "id": str(job.pk),
        "objectType": job.object_type,
        "fileName": job.file_name,
        "status": job.status,
        "dryRun": job.dry_run,
        "totalRows": job.total_rows,
        "processedRows": job.processed_rows,
        "created": job.created,
        "updated": job.updated,
        "unchanged": job.unchanged,
        "skipped": job.skipped,
        "failed": job.failed,
        "createdByUserId": str(job.created_by_id) if job.created_by_id else None,
        "createdAt": when(job.created_at),
        "startedAt": when(job.started_at),
        "finishedAt": when(job.finished_at),
        "error": job.error,
    }
