"""Contacts and company memberships, and `/companies/{companyId}/contacts`.

Serializers, filters and views only; every write with a rule goes through `crm.services.contacts`.
A contact's `companyId` is read from one correlated subquery on the list query (the primary
membership's company), so lists cost the same number of queries at any page size.
"""

from __future__ import annotations

import uuid

from django.db.models import F, FilteredRelation, Q
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer, extend_schema_view
from rest_framework import serializers, status
from rest_framework.response import Response

from axiomatic.api.serializers import ApiModelSerializer, ApiSerializer, EntityMemberField, EntityRelatedField
from axiomatic.api.viewsets import (
    CreateMixin,
    DestroyOkMixin,
    EntityScopedViewSet,
    ListMixin,
    ParentResource,
    PartialUpdateMixin,
    RetrieveMixin,
)
from crm.api.bulk import BulkMixin
from crm.api.custom_fields import CustomFieldsField
from crm.api.merged import MergedRecordsMixin
from crm.filters import ContactFilter
from crm.models import Company, CompanyMembership, Contact
from crm.selectors.contacts import primary_company_id
from crm.services.contacts import (
    contact_create,
    contact_delete,
    contact_email_normalise,
    contact_update,
    membership_create,
    membership_delete,
    membership_update,
)

COMPANY_ID_HELP = (
    "The company of the contact's primary membership (null when it has none). Writing it (on create "
    "or PATCH) makes that company the primary one: an existing membership at the company is promoted, "
    "otherwise a new membership is created; the previous primary membership is kept and demoted. "
    "Writing null only clears the primary flag: memberships are kept and companyId reads null. "
    "An id that does not exist in the entity → 400."
)


# --- serializers --------------------------------------------------------------------------------


class PrimaryCompanyField(EntityRelatedField):
    """`companyId` of a contact: a company id in the entity on input, the primary company on output.

    Reads the `primary_company_id` annotation the views add (no query per row); falls back to one
    query for a contact loaded elsewhere.
    """

    def __init__(self, **kwargs):
        super().__init__(model=Company, **kwargs)

    def get_attribute(self, instance):
        if hasattr(instance, "primary_company_id"):
            return instance.primary_company_id
        return (
            CompanyMembership.objects.filter(contact_id=instance.pk, is_primary=True)
            .values_list("company_id", flat=True)
            .first()
        )

    def to_representation(self, value):
        return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))  # SQLite gives hex


class ContactSerializer(ApiModelSerializer):
    """A person at one or more companies; `companyId` is the company of the primary membership."""

    full_name = serializers.CharField(read_only=True, help_text="First and last name joined by a space.")
    email = serializers.EmailField(
        max_length=254,
        allow_null=True,
        allow_blank=True,
        required=False,
        help_text="Lower-cased; unique in the entity when set (a duplicate → 409 with existingId). "
        "Blank is stored as null.",
    )
    company_id = PrimaryCompanyField(source="company", allow_null=True, required=False, help_text=COMPANY_ID_HELP)
    custom_fields = CustomFieldsField()
    owner_user_id = EntityMemberField(
        source="owner", allow_null=True, required=False, help_text="A member of the entity (else 400)."
    )

    class Meta:
        model = Contact
        fields = [
            "id",
            "first_name",
            "last_name",
            "full_name",
            "email",
            "phone",
            "title",
            "company_id",
            "owner_user_id",
            "linkedin_url",
            "notes",
            "custom_fields",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "full_name", "created_at", "updated_at"]
        extra_kwargs = {
            "first_name": {"help_text": "At least one of firstName, lastName or email is required."},
            "last_name": {"help_text": "At least one of firstName, lastName or email is required."},
            "title": {"help_text": "Job title."},
        }
        # A new contact needs a name or an address (IDENTITY_MESSAGE); blank ones do not count.
        openapi_create = {
            "anyOf": [
                {"required": ["firstName"], "properties": {"firstName": {"pattern": r"\S"}}},
                {"required": ["lastName"], "properties": {"lastName": {"pattern": r"\S"}}},
                {"required": ["email"], "properties": {"email": {"type": "string", "format": "email"}}},
            ]
        }

    def validate_email(self, value: str | None) -> str | None:
        return contact_email_normalise(value)


class ContactMembershipSummarySerializer(ApiSerializer):
    """The membership that ties a contact to the company of `/companies/{companyId}/contacts`."""

    id = serializers.UUIDField(source="membership_id", read_only=True)
    title = serializers.CharField(source="membership_title", read_only=True, help_text="Role at the company.")
    isPrimary = serializers.BooleanField(source="membership_is_primary", read_only=True)

    class Meta:
        ref_name = "ContactMembershipSummary"


class CompanyContactSerializer(ContactSerializer):
    """A contact of the company, with the membership that ties it to the company."""

    membership = ContactMembershipSummarySerializer(source="*", read_only=True)

    class Meta(ContactSerializer.Meta):
        fields = [*ContactSerializer.Meta.fields, "membership"]


class MembershipSerializer(ApiModelSerializer):
    """A contact's role at one company; at most one membership of a contact is primary."""

    contact_id = serializers.UUIDField(read_only=True)
    company_id = EntityRelatedField(
        model=Company,
        source="company",
        help_text="Required on create. One membership per company (a second one → 409 with existingId).",
    )
    company_name = serializers.CharField(source="company.name", read_only=True)
    is_primary = serializers.BooleanField(
        required=False,
        help_text="At most one membership of a contact is primary; true demotes the old primary. "
        "When omitted on create, the membership becomes primary if the contact has no primary "
        "membership (its first one); false on the primary leaves the contact without a primary "
        "company. Deleting the primary membership promotes no other.",
    )

    class Meta:
        model = CompanyMembership
        fields = [
            "id",
            "contact_id",
            "company_id",
            "company_name",
            "title",
            "is_primary",
            "start_date",
            "end_date",
            "created_at",
        ]
        read_only_fields = ["id", "contact_id", "company_name", "created_at"]
        extra_kwargs = {
            "title": {"help_text": "Role at the company."},
            "end_date": {"help_text": "Must not be before startDate (else 400)."},
        }


# --- filters ------------------------------------------------------------------------------------


# --- views --------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="List contacts",
        description="Ordered by last name, first name, then id. `companyId` of each contact is its primary company.",
    ),
    create=extend_schema(
        summary="Create a contact",
        description="Needs at least one of firstName, lastName or email (else 400). An email already used "
        "in the entity → 409 with existingId. `companyId` creates the primary membership.",
    ),
    retrieve=extend_schema(summary="Get a contact"),
    partial_update=extend_schema(
        summary="Update a contact",
        description="Changes only the fields sent. `companyId` switches the primary membership (see the field).",
    ),
    destroy=extend_schema(
        summary="Delete a contact",
        description="Its memberships are deleted with it; leads, activities and emails that pointed at it "
        "keep their history with contactId null.",
        responses={204: None},
    ),
)
class ContactViewSet(
    MergedRecordsMixin, BulkMixin, ListMixin, CreateMixin, RetrieveMixin, PartialUpdateMixin, EntityScopedViewSet
):
    merged_kind = "contact"  # a merged id answers 404 with mergedInto
    queryset = Contact.objects.all()
    serializer_class = ContactSerializer
    filterset_class = ContactFilter
    item_key = "contact"
    list_key = "contacts"
    ordering = ("last_name", "first_name", "id")
    total_counter = "contact"
    search_params = ("q",)

    def narrow_queryset(self, queryset):
        return queryset.annotate(primary_company_id=primary_company_id())

    def _reloaded(self, contact: Contact) -> Contact:
        return self.get_queryset().get(pk=contact.pk)

    def perform_create(self, serializer):
        return self._reloaded(contact_create(entity=self.request.entity, **serializer.validated_data))

    def perform_update(self, serializer):
        return self._reloaded(contact_update(contact=serializer.instance, **serializer.validated_data))

    def destroy(self, request, *args, **kwargs):
        contact_delete(contact=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


COMPANY_ID_PATH = OpenApiParameter("companyId", OpenApiTypes.UUID, OpenApiParameter.PATH, description="Company id")
CONTACT_ID_PATH = OpenApiParameter("contactId", OpenApiTypes.UUID, OpenApiParameter.PATH, description="Contact id")


@extend_schema(parameters=[COMPANY_ID_PATH])
@extend_schema_view(
    list=extend_schema(
        summary="List a company's contacts",
        description="Contacts with a membership (primary or not) at the company, each with that `membership`. "
        "Ordered by last name, first name, then id. Unknown company (or another entity's) → 404.",
    ),
)
class CompanyContactViewSet(ListMixin, EntityScopedViewSet):
    queryset = Contact.objects.all()
    serializer_class = CompanyContactSerializer
    item_key = "contact"
    list_key = "contacts"
    ordering = ("last_name", "first_name", "id")
    parent_resource = ParentResource(Company, "companyId")

    def narrow_queryset(self, queryset):
        return (
            queryset.annotate(
                at_company=FilteredRelation("memberships", condition=Q(memberships__company_id=self.parent.pk))
            )
            .filter(at_company__isnull=False)
            .annotate(
                membership_id=F("at_company__id"),
                membership_title=F("at_company__title"),
                membership_is_primary=F("at_company__is_primary"),
                primary_company_id=primary_company_id(),
            )
        )


@extend_schema_serializer(many=False)  # the list route answers one object, not a bare array
class MembershipListSerializer(serializers.Serializer):
    """All memberships of the contact, the primary one first (no paging)."""

    memberships = MembershipSerializer(many=True)

    class Meta:
        ref_name = "MembershipList"


@extend_schema(parameters=[CONTACT_ID_PATH])
@extend_schema_view(
    list=extend_schema(
        summary="List a contact's company memberships",
        description="All of them (no paging), the primary one first. Unknown contact → 404.",
        responses={200: MembershipListSerializer},
    ),
    create=extend_schema(
        summary="Add a company membership",
        description="Same company twice → 409 with existingId; unknown companyId → 400. "
        "The contact's first membership becomes primary; isPrimary true demotes the old primary.",
    ),
    retrieve=extend_schema(summary="Get a company membership"),
    partial_update=extend_schema(
        summary="Update a company membership",
        description="Changes only the fields sent; isPrimary true demotes the contact's old primary. "
        "A membership of another contact → 404.",
    ),
    destroy=extend_schema(
        summary="Remove a company membership",
        description="A membership of another contact → 404. Removing the primary membership leaves the "
        "contact's companyId null; no other membership is promoted.",
    ),
)
class ContactMembershipViewSet(CreateMixin, RetrieveMixin, PartialUpdateMixin, DestroyOkMixin, EntityScopedViewSet):
    queryset = CompanyMembership.objects.all()
    serializer_class = MembershipSerializer
    pagination_class = None
    operation_noun = "ContactCompanyMembership"  # listContactCompanyMemberships, ... (axiomatic.api.openapi)
    item_key = "membership"
    list_key = "memberships"
    ordering = ("-is_primary", "created_at", "id")
    parent_resource = ParentResource(Contact, "contactId", field="contact")

    def narrow_queryset(self, queryset):
        return queryset.select_related("company")

    def list(self, request, *args, **kwargs):
        serializer = self.get_serializer(self.get_queryset(), many=True)
        return Response({self.list_key: serializer.data})

    def perform_create(self, serializer):
        return membership_create(contact=self.parent, **serializer.validated_data)

    def perform_update(self, serializer):
        return membership_update(membership=serializer.instance, **serializer.validated_data)

    def perform_destroy(self, instance):
        membership_delete(membership=instance)
