"""What an import can write, derived from the serializers the single-record API validates with.

Registered with `crm.services.imports` at start-up, so the mapping guess, the page and the API
offer exactly the fields a POST or PATCH takes (plus the import's own link columns), and columns
an export writes but no write takes (`fullName`, `createdAt`, ...) are recognised and ignored.
"""

from __future__ import annotations

import re

from crm.api.companies import CompanySerializer
from crm.api.contacts import ContactSerializer
from crm.api.leads import LeadSerializer
from crm.services.imports import ImportField, register_import_fields

SERIALIZERS = {"company": CompanySerializer, "contact": ContactSerializer, "lead": LeadSerializer}

# Columns that link a row to another record by a natural key instead of an id.
LINK_FIELDS = {
    "contact": [
        ImportField("companyDomain", "Company domain", ("company website", "website")),
        ImportField("companyName", "Company name", ("company", "organisation", "organization", "account")),
    ],
    "lead": [
        ImportField("companyDomain", "Company domain", ("company website",)),
        ImportField("contactEmail", "Contact email", ("email",)),
    ],
}
ALIASES = {
    ("company", "name"): ("company", "company name"),
    ("company", "domain"): ("website domain",),
    ("contact", "email"): ("email address", "e-mail"),
    ("contact", "title"): ("job title",),
    ("lead", "title"): ("name", "deal", "opportunity"),
    ("lead", "value"): ("amount",),
}


def label_of(name: str) -> str:
    """`addressLine1` → `Address line 1`, `ownerUserId` → `Owner user id` (what a person types)."""
    words = re.sub(r"(?<=[a-z])(?=[A-Z0-9])", " ", name).lower()
    return words[:1].upper() + words[1:]


def register() -> None:
    for object_type, serializer_class in SERIALIZERS.items():
        fields = serializer_class().fields
        writable = [
            ImportField(name, label_of(name), ALIASES.get((object_type, name), ()))
            for name, field in fields.items()
            if not field.read_only
        ]
        read_only = [name for name, field in fields.items() if field.read_only and name != "id"]
        register_import_fields(
            object_type,
            [ImportField("id", "ID"), *writable, *LINK_FIELDS.get(object_type, [])],
            read_only=read_only,
        )
