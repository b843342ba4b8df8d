"""`manage.py duplicates_rebuild --entity UUID`: find every duplicate pair of an entity again.

The services keep the pairs on every write; rows loaded around them (COPY, a restore, a bulk
UPDATE by hand) are found by this command. Prints `{"entityId", "contact": n, "company": n}`.
"""

from __future__ import annotations

from axiomatic.management.commands._base import JsonCommand
from crm.services.duplicates import duplicates_rebuild


class Command(JsonCommand):
    help = "Find every duplicate contact and company pair of an entity again. Prints the pair counts."

    def add_arguments(self, parser):
        parser.add_argument("--entity", required=True, help="Entity UUID")

    def handle(self, *args, entity, **options):
        entity_obj = self.entity_from_arg(entity)
        self.emit({"entityId": entity_obj.pk, **duplicates_rebuild(entity=entity_obj)})
