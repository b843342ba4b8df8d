"""`manage.py sharding_report [--json]`: how far the live schema is from sharding by entity."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from axiomatic.db import is_postgres
from axiomatic.ops.sharding import sharding_report


class Command(BaseCommand):
    help = (
        "Classify every table of the live schema for sharding by entity_id on Citus (distributed, root, "
        "reference, local) and list what Citus would refuse today (docs/scaling.md). Reads the catalogs only."
    )

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="One JSON object instead of the text report.")
        parser.add_argument("--database", default="default", help="The database alias to read (default: default).")

    def handle(self, *args, json: bool = False, database: str = "default", **options):
        if not is_postgres(database):
            raise CommandError("sharding_report reads PostgreSQL's catalogs; DATABASE_URL is not PostgreSQL.")
        report = sharding_report(using=database)
        self.stdout.write(report.as_json() if json else report.as_text())
