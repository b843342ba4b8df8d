from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from axiomatic.tenancy import TenantModel
from crm.models.keys import contact_keys, fill_keys


class Contact(TenantModel):
    """A person at one or more companies.

    The email is lower-cased and unique per entity when set, because it is how people are
    recognised across imports, marketing lists and mailboxes. The company link is modelled by
    `CompanyMembership`; `companyId` in the API is the primary membership's company.
    """

    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    email = models.EmailField(max_length=254, null=True, blank=True)
    phone = models.CharField(max_length=50, blank=True)
    title = models.CharField(max_length=200, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    linkedin_url = models.CharField(max_length=500, blank=True)
    notes = models.TextField(blank=True)
    # Duplicate detection's keys (crm.services.duplicates), kept on write like the company's.
    name_key = models.CharField(max_length=201, null=True, blank=True, editable=False)
    phone_key = models.CharField(max_length=50, null=True, blank=True, editable=False)
    email_key = models.CharField(max_length=254, null=True, blank=True, editable=False)
    companies = models.ManyToManyField("crm.Company", through="crm.CompanyMembership", related_name="contacts")
    # Values of the entity's custom fields, keyed by definition (crm.models.custom_fields); the
    # database default lets bulk loaders (COPY) leave the column out.
    custom_fields = models.JSONField(
        default=dict, db_default=models.Value({}, output_field=models.JSONField()), blank=True
    )

    class Meta:
        ordering = ["last_name", "first_name", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["entity", "email"],
                condition=Q(email__isnull=False),
                name="contact_entity_email_uniq",
            )
        ]
        indexes = [
            models.Index(fields=["entity", "last_name", "first_name", "id"], name="contact_entity_name_idx"),
            # The staff admin lists every entity's rows in the same order.
            models.Index(fields=["last_name", "first_name", "id"], include=["entity"], name="contact_name_idx"),
            models.Index(
                fields=["entity", "owner", "last_name", "first_name", "id"], name="contact_entity_owner_name_idx"
            ),
            models.Index(fields=["entity", "name_key"], name="contact_entity_name_key_idx"),
            models.Index(fields=["entity", "phone_key"], name="contact_entity_phone_key_idx"),
            models.Index(fields=["entity", "email_key"], name="contact_entity_email_key_idx"),
        ]

    def __str__(self) -> str:
        return self.full_name or self.email or str(self.pk)

    def save(self, *args, **kwargs) -> None:
        kwargs["update_fields"] = fill_keys(self, contact_keys(self), kwargs.get("update_fields"))
        super().save(*args, **kwargs)

    @property
    def full_name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part)


class CompanyMembership(TenantModel):
    """A contact's role at a company; at most one per contact is primary (enforced by the database).

    The primary membership answers "which company is this person at", so the partial unique index
    makes two primaries impossible even under concurrent requests.
    """

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="memberships")
    company = models.ForeignKey("crm.Company", on_delete=models.CASCADE, related_name="memberships")
    title = models.CharField(max_length=200, blank=True)
    is_primary = models.BooleanField(default=False)
    start_date = models.DateField(null=True, blank=True)
    end_date = models.DateField(null=True, blank=True)

    class Meta:
        ordering = ["-is_primary", "created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["contact", "company"], name="membership_contact_company_uniq"),
            models.UniqueConstraint(
                fields=["contact"], condition=Q(is_primary=True), name="membership_one_primary_per_contact"
            ),
        ]
        indexes = [models.Index(fields=["company", "contact"], name="membership_company_idx")]

    def __str__(self) -> str:
        return f"{self.contact} at {self.company}"
