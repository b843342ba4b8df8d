"""The one place rows are tied to an entity (tenant).

Every tenant-owned model derives from `TenantModel`; its default manager only offers
`for_entity(entity)` as the way into the rows of one entity, which the base API viewset, the
services and the Celery tasks all use. The current entity is also written into the request's
database transaction (`app.entity_id`) so PostgreSQL row-level security can key on it.
"""

from __future__ import annotations

import uuid

from django.db import connection, models


class TenantQuerySet(models.QuerySet):
    def for_entity(self, entity) -> TenantQuerySet:
        entity_id = getattr(entity, "pk", entity)
        return self.filter(entity_id=entity_id)


class TenantModel(models.Model):
    """Abstract base: a UUID primary key, the owning entity, and timestamps."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    entity = models.ForeignKey("axiomatic.Entity", on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        abstract = True


def set_transaction_entity(entity_id) -> None:
    """Expose the current entity to the database transaction (for row-level security).

    `set_config(..., true)` is transaction-local, so it cannot leak into another request that
    reuses the connection. SQLite (the demo database) has no such setting and skips it.
    """
    if connection.vendor == "postgresql" and connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('app.entity_id', %s, true)", [str(entity_id)])
