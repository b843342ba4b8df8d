from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from axiomatic.tenancy import TenantModel
from crm.choices import CompanyRole, CompanyStatus
from crm.models.keys import company_keys, fill_keys


class Company(TenantModel):
    """An organisation the entity sells to or buys from.

    `domain` is the natural key people reuse across tools, so it is unique per entity when set
    (a partial unique index; blank domains are NULL). Archiving is a status, not a delete, so
    leads and history keep pointing at the company.
    """

    name = models.CharField(max_length=200)
    role = models.CharField(max_length=10, choices=CompanyRole.choices, default=CompanyRole.PROSPECT)
    status = models.CharField(max_length=10, choices=CompanyStatus.choices, default=CompanyStatus.ACTIVE)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    domain = models.CharField(max_length=253, null=True, blank=True)
    website = models.CharField(max_length=500, blank=True)
    phone = models.CharField(max_length=50, blank=True)
    email = models.EmailField(max_length=254, blank=True)
    industry = models.CharField(max_length=100, blank=True)
    address_line1 = models.CharField(max_length=200, blank=True)
    address_line2 = models.CharField(max_length=200, blank=True)
    city = models.CharField(max_length=100, blank=True)
    region = models.CharField(max_length=100, blank=True)
    postal_code = models.CharField(max_length=20, blank=True)
    country = models.CharField(max_length=2, blank=True)
    notes = models.TextField(blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    # Duplicate detection's keys (crm.services.duplicates): normalised copies kept on write (a
    # PostgreSQL trigger; the model's save on SQLite), so finding a company's twins is an index lookup.
    name_key = models.CharField(max_length=200, null=True, blank=True, editable=False)
    phone_key = models.CharField(max_length=50, null=True, blank=True, editable=False)
    website_host = models.CharField(max_length=253, null=True, blank=True, editable=False)
    # Values of the entity's custom fields, keyed by definition (crm.models.custom_fields); the
    # database default lets bulk loaders (COPY) leave the column out.
    custom_fields = models.JSONField(
        default=dict, db_default=models.Value({}, output_field=models.JSONField()), blank=True
    )

    class Meta:
        verbose_name_plural = "companies"
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["entity", "domain"],
                condition=Q(domain__isnull=False),
                name="company_entity_domain_uniq",
            )
        ]
        indexes = [
            models.Index(fields=["entity", "name", "id"], name="company_entity_name_idx"),
            # The staff admin lists every entity's rows in the same order; the entity rides along so
            # that row-level security is checked from the index (a deep page skips no table rows).
            models.Index(fields=["name", "id"], include=["entity"], name="company_name_idx"),
            # Filtered lists keep the list's order (name, id) inside each filter value.
            models.Index(fields=["entity", "owner", "name", "id"], name="company_entity_owner_name_idx"),
            models.Index(fields=["entity", "role", "name", "id"], name="company_entity_role_name_idx"),
            models.Index(fields=["entity", "status", "name", "id"], name="company_entity_status_name_idx"),
            models.Index(fields=["entity", "name_key"], name="company_entity_name_key_idx"),
            models.Index(fields=["entity", "phone_key"], name="company_entity_phone_key_idx"),
            models.Index(fields=["entity", "website_host"], name="company_entity_host_key_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        kwargs["update_fields"] = fill_keys(self, company_keys(self), kwargs.get("update_fields"))
        super().save(*args, **kwargs)
