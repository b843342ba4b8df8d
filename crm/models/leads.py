from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from axiomatic.currencies import validate_currency_code
from axiomatic.tenancy import TenantModel, TenantQuerySet
from crm.choices import ActorType, LeadEventKind


class Lead(TenantModel):
    """A sales opportunity moving through the pipeline.

    Money is a Decimal with two places (never a float). `closed_at` and `stage_changed_at` are
    kept on the row because the board and the dashboard filter on them at scale; every change of
    stage goes through `crm.services.leads.lead_move_stage` so they and the timeline stay true.
    """

    title = models.CharField(max_length=200)
    company = models.ForeignKey("crm.Company", null=True, blank=True, on_delete=models.SET_NULL, related_name="leads")
    contact = models.ForeignKey("crm.Contact", null=True, blank=True, on_delete=models.SET_NULL, related_name="leads")
    stage = models.ForeignKey("crm.PipelineStage", on_delete=models.PROTECT, related_name="leads")
    value = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3, validators=[validate_currency_code])
    probability_pct = models.PositiveSmallIntegerField(validators=[MinValueValidator(0), MaxValueValidator(100)])
    expected_close_date = models.DateField(null=True, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source = models.CharField(max_length=100, blank=True)
    notes = models.TextField(blank=True)
    lost_reason = models.CharField(max_length=500, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    stage_changed_at = models.DateTimeField(null=True, blank=True)
    # Values of the entity's custom fields, keyed by definition (crm.models.custom_fields); the
    # database default lets bulk loaders (COPY) leave the column out.
    custom_fields = models.JSONField(
        default=dict, db_default=models.Value({}, output_field=models.JSONField()), blank=True
    )

    class Meta:
        ordering = ["-updated_at", "id"]
        indexes = [
            models.Index(fields=["entity", "-updated_at", "id"], name="lead_entity_updated_idx"),
            # The staff admin's order, with the entity for row-level security from the index.
            models.Index(fields=["-updated_at", "id"], include=["entity"], name="lead_updated_idx"),
            # Filtered lists keep the list's order (newest updatedAt, id) inside each filter value.
            models.Index(fields=["entity", "stage", "-updated_at", "id"], name="lead_entity_stage_upd_idx"),
            models.Index(fields=["entity", "company", "-updated_at", "id"], name="lead_entity_company_upd_idx"),
            models.Index(fields=["entity", "contact", "-updated_at", "id"], name="lead_entity_contact_upd_idx"),
            models.Index(fields=["entity", "owner", "-updated_at", "id"], name="lead_entity_owner_upd_idx"),
            # The dashboard's periods and charts: closed this month / in 90 days / per month, read from
            # the index alone (it carries what they group and sum), created this month.
            models.Index(
                fields=["entity", "closed_at"], include=["stage", "currency", "value"], name="lead_entity_closed_idx"
            ),
            models.Index(fields=["entity", "created_at"], name="lead_entity_created_idx"),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def weighted_value(self):
        if self.value is None:
            return None
        from decimal import ROUND_HALF_UP, Decimal

        return (self.value * self.probability_pct / Decimal(100)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


class LeadEvent(models.Model):
    """One entry of a lead's timeline, stored as it happened.

    An append-only log (as Twenty and Frappe CRM keep) pages cheaply newest-first and keeps the
    names of stages and actors as they were, even after renames or deletes.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    entity = models.ForeignKey("axiomatic.Entity", on_delete=models.CASCADE, related_name="+")
    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, choices=LeadEventKind.choices)
    occurred_at = models.DateTimeField(db_index=False)
    actor_type = models.CharField(max_length=10, choices=ActorType.choices, default=ActorType.SYSTEM)
    actor_id = models.UUIDField(null=True, blank=True)
    actor_name = models.CharField(max_length=200, blank=True)
    summary = models.CharField(max_length=500)
    data = models.JSONField(default=dict, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [models.Index(fields=["lead", "-occurred_at", "-id"], name="leadevent_lead_time_idx")]

    def __str__(self) -> str:
        return self.summary
