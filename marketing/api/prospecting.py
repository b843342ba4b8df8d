"""Prospecting: `POST /api/crm/prospecting/add-to-marketing-list`. Scope write:crm."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response

from axiomatic.api.schema import ErrorSerializer
from axiomatic.api.serializers import ApiSerializer, StrictUUIDField
from axiomatic.api.viewsets import EntityScopedViewSet
from marketing.models import MarketingList, MemberSource
from marketing.services import MAX_IDS_PER_ADD, SkipReason, list_add_contacts


@extend_schema_field(OpenApiTypes.UUID)
def _id_list(help_text: str) -> serializers.ListField:
    return serializers.ListField(
        child=StrictUUIDField(), required=False, max_length=MAX_IDS_PER_ADD, help_text=help_text
    )


class AddToMarketingListSerializer(ApiSerializer):
    """Contacts to add to a list, named directly or through their companies and leads."""

    list_id = StrictUUIDField(help_text="The marketing list; unknown (or another entity's) → 404.")
    contact_ids = _id_list("Contacts to add.")
    company_ids = _id_list("Companies: each contributes every contact with a membership there.")
    lead_ids = _id_list("Leads: each contributes its contact.")

    class Meta:
        openapi_request = {
            "anyOf": [
                {"required": [key], "properties": {key: {"minItems": 1}}}
                for key in ("contactIds", "companyIds", "leadIds")
            ]
        }

    def validate(self, attrs):
        total = sum(len(attrs.get(key, ())) for key in ("contact_ids", "company_ids", "lead_ids"))
        if total == 0:
            raise serializers.ValidationError("Give at least one id in contactIds, companyIds or leadIds.")
        if total > MAX_IDS_PER_ADD:
            raise serializers.ValidationError(
                f"At most {MAX_IDS_PER_ADD} ids in all (contactIds + companyIds + leadIds); got {total}."
            )
        return attrs


class SkippedSerializer(ApiSerializer):
    """A contact or id that was not added, and why."""

    id = serializers.UUIDField(
        help_text="For `no_email` and `unsubscribed`: the contact's id, also when it was reached through a "
        "company or a lead. For `not_found`: the id as sent (a contact, company or lead id that does not "
        "exist in this entity, or a lead that has no contact)."
    )
    reason = serializers.ChoiceField(choices=[SkipReason.NO_EMAIL, SkipReason.UNSUBSCRIBED, SkipReason.NOT_FOUND])

    class Meta:
        ref_name = "AddToMarketingListSkipped"


class AddToMarketingListResultSerializer(ApiSerializer):
    """What the add did; each distinct contact is counted in exactly one place."""

    list_id = serializers.UUIDField()
    added = serializers.IntegerField(help_text="Distinct contacts newly put on the list (status subscribed).")
    already_on_list = serializers.IntegerField(
        help_text="Distinct contacts already subscribed to the list (or whose email address already is)."
    )
    skipped = SkippedSerializer(many=True, help_text="Contacts and ids left out, each once, with the reason.")

    class Meta:
        ref_name = "AddToMarketingListResult"


class ProspectingViewSet(EntityScopedViewSet):
    queryset = MarketingList.objects.all()
    serializer_class = AddToMarketingListSerializer
    pagination_class = None
    filter_backends: list = []

    @extend_schema(
        operation_id="addToMarketingList",
        summary="Add contacts to a marketing list",
        description=(
            "Adds the contacts named directly, every contact with a membership at the given companies, and the "
            "contact of each given lead, in one bulk operation. At least one id and at most "
            f"{MAX_IDS_PER_ADD} ids in all (else 400); a malformed id → 400. Each contact counts once however "
            "many paths reach it, and lands in exactly one of `added`, `alreadyOnList` or `skipped`. "
            "Contacts without an email (`no_email`) and contacts who unsubscribed from the list "
            "(`unsubscribed`, also matched by email address) are skipped and never re-added. Ids that do not "
            "exist in this entity are reported as `not_found`; a company without contacts adds nothing and is "
            "not reported. Idempotent: repeating the call adds nothing new. Needs `write:crm`."
        ),
        request=AddToMarketingListSerializer,
        responses={
            200: AddToMarketingListResultSerializer,
            404: OpenApiResponse(ErrorSerializer, description="The list does not exist in this entity."),
        },
    )
    @action(detail=False, methods=["post"], url_path="add-to-marketing-list")
    def add_to_marketing_list(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        marketing_list = get_object_or_404(self.get_queryset(), pk=data["list_id"])
        result = list_add_contacts(
            marketing_list=marketing_list,
            contact_ids=data.get("contact_ids", ()),
            company_ids=data.get("company_ids", ()),
            lead_ids=data.get("lead_ids", ()),
            source=MemberSource.PROSPECTING,
        )
        return Response(AddToMarketingListResultSerializer(result).data)
