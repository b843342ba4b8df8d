"""The change feed's table: one row per change of a feed object (see `axiomatic.changes`).

A row is inserted by the service that makes the change, in the same transaction, with `seq`
empty. A deferred constraint trigger (migration `0005_change_feed`) numbers the transaction's rows
at COMMIT, under the entity's `changes.seq` counter row lock, so `seq` follows the order in which
transactions became visible and no reader ever sees a row without one. `data` and `previous` are
JSON text, stored as encoded (no re-parsing on insert, key order kept), and spliced as such into
the feed's answers and the webhook bodies.
"""

from __future__ import annotations

from django.db import models

from axiomatic.tenancy import TenantQuerySet


class Change(models.Model):
    """One change of one object of one entity: `<objectType>.<action>` with its data."""

    id = models.BigAutoField(primary_key=True)  # insertion order inside a transaction
    event_id = models.CharField(max_length=40)  # "evt_…": the change's id for clients and webhooks
    # No database constraint (like EntityCounter): the feed outlives nothing, an entity's deletion
    # removes its changes (`axiomatic.signals`), and no FK check runs at commit for each change.
    entity = models.ForeignKey("axiomatic.Entity", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    seq = models.BigIntegerField(null=True, blank=True)  # set at commit; never null once visible
    type = models.CharField(max_length=64)
    object_type = models.CharField(max_length=40)
    object_id = models.CharField(max_length=64)
    occurred_at = models.DateTimeField()
    actor_type = models.CharField(max_length=10)
    actor_id = models.CharField(max_length=64, null=True, blank=True)
    data = models.TextField()  # JSON text
    previous = models.TextField(null=True, blank=True)  # JSON text, for updated and stage_changed

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["entity", "seq"], name="change_entity_seq_uniq")]
        indexes = [
            models.Index(fields=["occurred_at"], name="change_occurred_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.object_id} (seq {self.seq}) in {self.entity_id}"
