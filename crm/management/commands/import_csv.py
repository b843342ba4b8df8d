"""`manage.py import_csv FILE --entity UUID --object-type contact`: apply a CSV import in this
process (one worker) with the rules of `POST /api/crm/imports`; prints the finished import as one
JSON object, with a progress bar on stderr when it is a terminal."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from django.core.management.base import CommandError
from django.db import reset_queries

from axiomatic import errors
from axiomatic.management.commands._base import JsonCommand
from axiomatic.rls import entity_scope
from axiomatic.services import entity_owner
from crm.bulk.importer import import_run
from crm.models import Import
from crm.services.imports import MATCH_ON, OBJECT_TYPES, ImportRequest, import_create, import_summary

READ_BYTES = 256 * 1024


def _chunks(path: Path):
    with path.open("rb") as handle:
        while chunk := handle.read(READ_BYTES):
            yield chunk


class Command(JsonCommand):
    help = "Import a CSV file of companies, contacts or leads into an entity (in this process)."

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--entity", required=True)
        parser.add_argument("--object-type", required=True, choices=OBJECT_TYPES)
        parser.add_argument("--mapping", help='JSON {"<CSV header>": "<field>" | null}')
        parser.add_argument("--match-on", choices=sorted({m for values in MATCH_ON.values() for m in values}))
        parser.add_argument("--on-match", choices=("update", "skip"), default="update")
        parser.add_argument("--dry-run", action="store_true")
        parser.add_argument("--clear-empty", action="store_true")
        parser.add_argument("--create-companies", action="store_true")
        parser.add_argument("--user", help="Who imports (default: the entity's owner)")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar even on a terminal")

    def handle(self, *args, **options):
        entity = self.entity_from_arg(options["entity"])
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        try:
            mapping = json.loads(options["mapping"]) if options["mapping"] else None
        except ValueError:
            raise CommandError("--mapping must be a JSON object") from None
        user = self.user_from_arg(options["user"]) if options["user"] else entity_owner(entity)
        request = ImportRequest(
            object_type=options["object_type"],
            mapping=mapping,
            match_on=options["match_on"],
            on_match=options["on_match"],
            dry_run=options["dry_run"],
            clear_empty=options["clear_empty"],
            create_companies=options["create_companies"],
        )
        with entity_scope(entity.pk):
            try:
                job = import_create(
                    entity=entity,
                    user=user,
                    actor=("user", str(user.pk)) if user else ("system", None),
                    chunks=_chunks(path),
                    file_name=path.name,
                    request=request,
                    kick=False,
                )
            except errors.DomainError as exc:
                raise CommandError(exc.message) from None
            self._run(job, show=sys.stderr.isatty() and not options["no_progress"])
            job = Import.objects.get(pk=job.pk)
        self.emit(import_summary(job))
        if job.status != Import.Status.SUCCEEDED:
            raise CommandError(f"The import {job.status}: {job.error or 'see its errors'}")

    @staticmethod
    def _progress(bar, task, done: int) -> None:
        bar.update(task, completed=done)
        reset_queries()  # with DEBUG=1 (manage.py's default) the query log would grow with every chunk

    def _run(self, job: Import, *, show: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            disable=not show,
            transient=False,
        ) as bar:
            task = bar.add_task(f"Importing {job.file_name}", total=job.total_rows)
            token = None
            while True:
                result = import_run(
                    import_id=job.pk, token=token, progress=lambda done: self._progress(bar, task, done)
                )
                if result.state != "continue":
                    break
                token = result.token
