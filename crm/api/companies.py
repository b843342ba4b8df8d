"""Companies: serializer, filters and views of `/api/crm/companies`."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import django_filters
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers

from axiomatic.api.filters import OwnerFilter, StrictFilterSet, SubstringFilter
from axiomatic.api.openapi import openapi_field
from axiomatic.api.serializers import ApiModelSerializer, EntityMemberField
from axiomatic.api.viewsets import (
    CreateMixin,
    EntityScopedViewSet,
    ListMixin,
    PartialUpdateMixin,
    RetrieveMixin,
)
from crm.choices import CompanyRole, CompanyStatus
from crm.models import Company
from crm.services.companies import company_create, company_update

_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
# What `normalise_domain` accepts, for the schema: a host name, or a URL whose host is one.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
DOMAIN_INPUT_PATTERN = (
    r"^\s+$|^\s*(?:(?:[A-Za-z][A-Za-z0-9+.-]*:)?//)?(?:[A-Za-z0-9._~%!$&'()*+,;=:-]*@)?"
    rf"(?:{_LABEL}\.)+[A-Za-z]{{2,63}}\.?(?::[0-9]*)?(?:[/?#]\S*)?\s*$"
)
COUNTRY_INPUT_PATTERN = r"^(?:[A-Za-z]{2}|\s{1,2})$"


def normalise_domain(value: str) -> str | None:
    """`https://WWW.Example.com/path` → `www.example.com`; raises on something that is no host."""
    value = value.strip().lower()
    if not value:
        return None
    try:
        host = urlsplit(value if "//" in value else f"//{value}").hostname or ""
    except ValueError:
        host = ""
    host = host.rstrip(".")
    if not _DOMAIN.match(host):
        raise serializers.ValidationError("Enter a domain such as example.com.")
    return host


class CompanySerializer(ApiModelSerializer):
    """A prospect, customer or vendor (or both) of the entity."""

    owner_user_id = EntityMemberField(source="owner", allow_null=True, required=False)
    domain = openapi_field(
        serializers.CharField(
            max_length=253,
            allow_blank=True,
            allow_null=True,
            required=False,
            help_text="A host name such as example.com; a URL is reduced to its host (`https://WWW.Example.com/a` "
            "→ `www.example.com`). Unique in the entity (else 409 with existingId); blank or null clears it.",
        ),
        request={"type": "string", "pattern": DOMAIN_INPUT_PATTERN},
        response={"type": "string", "pattern": rf"^(?:{_LABEL}\.)+[a-z]{{2,63}}$"},
    )
    country = openapi_field(
        serializers.CharField(
            max_length=2,
            allow_blank=True,
            required=False,
            help_text="ISO 3166-1 alpha-2 code such as DE (stored upper-case), or blank.",
        ),
        request={"type": "string", "pattern": COUNTRY_INPUT_PATTERN},
        response={"type": "string", "pattern": "^[A-Z]{2}$"},
    )

    class Meta:
        model = Company
        fields = [
            "id",
            "name",
            "role",
            "status",
            "owner_user_id",
            "domain",
            "website",
            "phone",
            "email",
            "industry",
            "address_line1",
            "address_line2",
            "city",
            "region",
            "postal_code",
            "country",
            "notes",
            "archived_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "archived_at", "created_at", "updated_at"]

    def validate_domain(self, value: str | None) -> str | None:
        return normalise_domain(value) if value else None

    def validate_country(self, value: str) -> str:
        value = value.strip()
        value = value.upper() if value.isascii() else value  # "ß".upper() is "SS": no country
        if value and not _COUNTRY.match(value):
            raise serializers.ValidationError("Use an ISO 3166-1 alpha-2 code such as DE.")
        return value


class CompanyFilter(StrictFilterSet):
    role = django_filters.ChoiceFilter(choices=CompanyRole.choices, help_text="Commercial relationship type")
    status = django_filters.ChoiceFilter(
        choices=CompanyStatus.choices,
        help_text="Lifecycle: active, or inactive (archived). Without it, archived companies are included.",
    )
    ownerUserId = OwnerFilter(field_name="owner", help_text="UUID, me, or unassigned")
    q = SubstringFilter(field_name="name", help_text="Case-insensitive substring of the name")

    class Meta:
        model = Company
        fields = ["role", "status", "ownerUserId", "q"]


@extend_schema_view(
    list=extend_schema(summary="List companies", description="Ordered by name, then id."),
    create=extend_schema(summary="Create a company", description="A domain already used → 409 with existingId."),
    retrieve=extend_schema(summary="Get a company"),
    partial_update=extend_schema(summary="Update a company", description="Changes only the fields sent."),
)
class CompanyViewSet(ListMixin, CreateMixin, RetrieveMixin, PartialUpdateMixin, EntityScopedViewSet):
    queryset = Company.objects.all()
    serializer_class = CompanySerializer
    filterset_class = CompanyFilter
    item_key = "company"
    list_key = "companies"
    ordering = ("name", "id")
    total_counter = "company"
    search_params = ("q",)

    def perform_create(self, serializer):
        return company_create(entity=self.request.entity, **serializer.validated_data)

    def perform_update(self, serializer):
        return company_update(company=serializer.instance, **serializer.validated_data)
