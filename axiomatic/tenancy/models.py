"""Rows tied to an entity (tenant).

Every tenant-owned model derives from `TenantModel`; its default manager only offers
`for_entity(entity)` as the way into the rows of one entity, which the base API viewset, the
services and the Celery tasks all use.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models.functions import Lower


class TenantQuerySet(models.QuerySet):
    def for_entity(self, entity) -> TenantQuerySet:
        entity_id = getattr(entity, "pk", entity)
        return self.filter(entity_id=entity_id)

    def named_ignoring_case(self, name: str, *, field: str = "name") -> TenantQuerySet:
        """Rows whose `field` equals `name` ignoring case, as a `Lower()` unique constraint sees it.

        `iexact` compares UPPER() and the constraints compare LOWER(); they disagree on a few
        letters (the Kelvin sign lowers to "k" but does not upper to "K"), so both are tested.
        """
        return self.alias(_name_lower=Lower(field)).filter(
            models.Q(**{f"{field}__iexact": name}) | models.Q(_name_lower=Lower(models.Value(name)))
        )


class TenantModel(models.Model):
    """Abstract base: a UUID primary key, the owning entity, and timestamps."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    entity = models.ForeignKey("axiomatic.Entity", on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        abstract = True
