"""Custom field definitions: the fields each entity adds to its companies, contacts and leads."""

from __future__ import annotations

from django.db import models
from django.utils.functional import cached_property

from axiomatic.tenancy import TenantModel


class CustomFieldObjectType(models.TextChoices):
    COMPANY = "company", "Company"
    CONTACT = "contact", "Contact"
    LEAD = "lead", "Lead"


class CustomFieldType(models.TextChoices):
    TEXT = "text", "Text"
    NUMBER = "number", "Number"
    DATE = "date", "Date"
    DATETIME = "datetime", "Date and time"
    BOOLEAN = "boolean", "Yes/no"
    SELECT = "select", "Select"
    MULTISELECT = "multiselect", "Multi-select"
    URL = "url", "URL"
    EMAIL = "email", "Email"
    USER = "user", "User"
    CURRENCY = "currency", "Currency amount"


class CustomField(TenantModel):
    """One field an entity's admins added to an object type (company, contact or lead).

    Every team tracks things no fixed schema has (a contract number, a renewal date, a region), so
    the definitions are rows and the records carry their values in one `custom_fields` JSON column.
    The `key` is the stable name integrations use (`customFields.<key>`); it never changes, nor do
    `type`, `objectType` and `unique`, because stored values and indexes depend on them.

    Values are stored under `storage_key` (this definition's id), not under `key`: deleting a
    definition then hides its values at once (responses only show defined keys) and a later field
    with the same key can never see the old values, without rewriting a million rows in the
    request. The rules live in `crm.services.custom_fields`.
    """

    object_type = models.CharField(max_length=10, choices=CustomFieldObjectType.choices)
    key = models.CharField(max_length=40)
    label = models.CharField(max_length=200)
    type = models.CharField(max_length=12, choices=CustomFieldType.choices)
    options = models.JSONField(default=list, blank=True)
    required = models.BooleanField(default=False)
    unique = models.BooleanField(default=False)
    description = models.TextField(blank=True)
    sort_order = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["object_type", "sort_order", "id"]
        constraints = [
            models.UniqueConstraint(fields=["entity", "object_type", "key"], name="customfield_entity_type_key_uniq"),
        ]
        indexes = [
            models.Index(fields=["entity", "object_type", "sort_order", "id"], name="customfield_entity_order_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.object_type}.{self.key}"

    @cached_property
    def storage_key(self) -> str:
        """Where records keep this field's value in `custom_fields` (a letter first, so no backend
        reads it as an array index). Cached: a list reads it for every field of every row."""
        return storage_key_of(self.pk)

    @property
    def option_values(self) -> list[str]:
        return [option["value"] for option in self.options or []]


def storage_key_of(field_id) -> str:
    return "f" + (field_id.hex if hasattr(field_id, "hex") else str(field_id).replace("-", ""))
