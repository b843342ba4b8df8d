"""Companies: serializer, filters and views of `/api/crm/companies`."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers

from axiomatic.api.openapi import openapi_field
from axiomatic.api.serializers import ApiModelSerializer, EntityMemberField
from axiomatic.api.viewsets import (
    CreateMixin,
    EntityScopedViewSet,
    ListMixin,
    PartialUpdateMixin,
    RetrieveMixin,
)
from axiomatic.errors import field_rule
from crm.api.bulk import BulkMixin
from crm.api.custom_fields import CustomFieldsField
from crm.api.merged import MergedRecordsMixin
from crm.filters import CompanyFilter
from crm.models import Company
from crm.services.companies import (
    company_country_normalise,
    company_create,
    company_domain_normalise,
    company_update,
)

# What `company_domain_normalise` accepts, for the schema: a host name, or a URL whose host is one.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
DOMAIN_INPUT_PATTERN = (
    r"^\s+$|^\s*(?:(?:[A-Za-z][A-Za-z0-9+.-]*:)?//)?(?:[A-Za-z0-9._~%!$&'()*+,;=:-]*@)?"
    rf"(?:{_LABEL}\.)+[A-Za-z]{{2,63}}\.?(?::[0-9]*)?(?:[/?#]\S*)?\s*$"
)
COUNTRY_INPUT_PATTERN = r"^(?:[A-Za-z]{2}|\s{1,2})$"


class CompanySerializer(ApiModelSerializer):
    """A prospect, customer or vendor (or both) of the entity."""

    owner_user_id = EntityMemberField(source="owner", allow_null=True, required=False)
    custom_fields = CustomFieldsField()
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
            "custom_fields",
            "archived_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "archived_at", "created_at", "updated_at"]

    def validate_domain(self, value: str | None) -> str | None:
        return field_rule(company_domain_normalise, value)

    def validate_country(self, value: str) -> str:
        return field_rule(company_country_normalise, value)


@extend_schema_view(
    list=extend_schema(summary="List companies", description="Ordered by name, then id."),
    create=extend_schema(summary="Create a company", description="A domain already used → 409 with existingId."),
    retrieve=extend_schema(summary="Get a company"),
    partial_update=extend_schema(summary="Update a company", description="Changes only the fields sent."),
)
class CompanyViewSet(
    MergedRecordsMixin, BulkMixin, ListMixin, CreateMixin, RetrieveMixin, PartialUpdateMixin, EntityScopedViewSet
):
    merged_kind = "company"  # a merged id answers 404 with mergedInto
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
