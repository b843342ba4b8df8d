"""Duplicate pairs, their dismissals, and the tombstones merges leave behind.

Finding duplicates at request time means comparing every record with every other one; on a
million rows no page could answer in time. So the pairs are kept in a table, maintained on write
in the same transaction as the record written (crm.services.duplicates), and `GET .../duplicates`
is one indexed page over it. A pair is stored once, with `first_id < second_id`.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import F

from axiomatic.tenancy import TenantModel


class DuplicatePair(TenantModel):
    """Abstract: two records that look like the same thing, why (`reasons`), and how sure (0..1)."""

    # The page index (entity, score, id) leads with the entity: no index of its own for it (pair
    # tables hold millions of rows; every index is written on every pair).
    entity = models.ForeignKey("axiomatic.Entity", on_delete=models.CASCADE, related_name="+", db_index=False)
    reasons = models.JSONField(default=list)
    score = models.FloatField()

    class Meta:
        abstract = True

    @property
    def ids(self) -> list[uuid.UUID]:
        return [self.first_id, self.second_id]  # type: ignore[attr-defined]


class ContactDuplicate(DuplicatePair):
    """Two contacts that may be one person (pairs vanish with either contact: CASCADE)."""

    first = models.ForeignKey(
        "crm.Contact", on_delete=models.CASCADE, related_name="+", db_index=False
    )  # (first, second)
    second = models.ForeignKey("crm.Contact", on_delete=models.CASCADE, related_name="+")

    class Meta:
        ordering = [F("score").desc(), "id"]
        constraints = [models.UniqueConstraint(fields=["first", "second"], name="contactduplicate_pair_uniq")]
        indexes = [
            models.Index(F("entity"), F("score").desc(), F("id"), name="contactduplicate_page_idx"),
        ]


class CompanyDuplicate(DuplicatePair):
    """Two companies that may be one organisation (pairs vanish with either company)."""

    first = models.ForeignKey(
        "crm.Company", on_delete=models.CASCADE, related_name="+", db_index=False
    )  # (first, second)
    second = models.ForeignKey("crm.Company", on_delete=models.CASCADE, related_name="+")

    class Meta:
        ordering = [F("score").desc(), "id"]
        constraints = [models.UniqueConstraint(fields=["first", "second"], name="companyduplicate_pair_uniq")]
        indexes = [
            models.Index(F("entity"), F("score").desc(), F("id"), name="companyduplicate_page_idx"),
        ]


class DuplicateKind(models.TextChoices):
    CONTACT = "contact", "Contact"
    COMPANY = "company", "Company"


class DuplicateDismissal(TenantModel):
    """A pair someone said is not a duplicate: never offered again, whatever later writes find.

    Plain ids rather than foreign keys: a dismissal outlives nothing it needs (ids are never
    reused), and keeping it when a record is deleted costs one small row.
    """

    kind = models.CharField(max_length=10, choices=DuplicateKind.choices)
    first_id = models.UUIDField()
    second_id = models.UUIDField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["entity", "kind", "first_id", "second_id"], name="duplicatedismissal_uniq")
        ]


class MergedRecord(TenantModel):
    """The tombstone of a merged record: `GET` of its id answers 404 with `mergedInto`.

    When the survivor is merged again later, its tombstones follow it (they always name the record
    that holds the data now).
    """

    kind = models.CharField(max_length=10, choices=DuplicateKind.choices)
    merged_id = models.UUIDField()
    survivor_id = models.UUIDField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["entity", "kind", "merged_id"], name="mergedrecord_uniq")]
        indexes = [models.Index(fields=["entity", "kind", "survivor_id"], name="mergedrecord_survivor_idx")]
