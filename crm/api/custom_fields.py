"""Custom fields: the definitions' routes (`/api/crm/custom-fields`) and the `customFields` field
that companies, contacts and leads carry.

Reads need `read:crm`; writes `write:crm` and the admin (or owner) role: shaping the data model is
the admins' job. Every rule is in `crm.services.custom_fields`.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from axiomatic.api.schema import ApiAutoSchema, ErrorSerializer, item_envelope
from axiomatic.api.serializers import ApiDateTimeField, ApiModelSerializer
from axiomatic.api.viewsets import CreateMixin, EntityScopedViewSet, PartialUpdateMixin, RetrieveMixin
from axiomatic.roles import ADMIN
from crm.models import CustomField
from crm.models.custom_fields import CustomFieldObjectType, CustomFieldType
from crm.selectors.custom_fields import custom_field_list, definitions_for, object_type_of
from crm.services.custom_fields import (
    KEY_PATTERN,
    MAX_OPTIONS,
    OPTION_VALUE_PATTERN,
    custom_field_create,
    custom_field_delete,
    custom_field_update,
    custom_fields_represent,
)

CURRENCY_VALUE_SCHEMA = {
    "type": "object",
    "properties": {
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$", "example": "EUR"},
        "amount": {"type": "string", "pattern": r"^[0-9]{1,12}\.[0-9]{2}$", "example": "12.50"},
    },
    "required": ["currency", "amount"],
}
CUSTOM_FIELDS_DESCRIPTION = (
    "The entity's custom fields of this object type (GET /custom-fields), keyed by `key`. Responses carry "
    "every defined key (null where unset). Values by type: text, url, email (lower-cased), select, date "
    "(YYYY-MM-DD), datetime (UTC, Z), user (a member's user id) → string; number → decimal string (a JSON "
    "number or a string on input); boolean → true/false; multiselect → array of option values; currency → "
    '`{"currency": "EUR", "amount": "12.50"}`. On POST and PATCH a partial object: keys sent are set, null '
    "clears, keys not sent are kept; an unknown key, a wrong type or an unknown option → 400 with details "
    "keyed `customFields.<key>`; a required field must be given on create and cannot be cleared; a unique "
    "field's value held by another record → 409 with existingId."
)
CUSTOM_FIELD_VALUE_SCHEMA = {
    "nullable": True,
    "oneOf": [
        {"type": "string"},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "array", "items": {"type": "string"}},
        CURRENCY_VALUE_SCHEMA,
    ],
}
CUSTOM_FIELDS_SCHEMA = {
    "type": "object",
    "additionalProperties": CUSTOM_FIELD_VALUE_SCHEMA,
    "description": CUSTOM_FIELDS_DESCRIPTION,
    "example": {"contract_no": "C-1042", "renewal": "2027-01-31", "seats": "25", "region": "emea"},
}


@extend_schema_field(CUSTOM_FIELDS_SCHEMA)
class CustomFieldsField(serializers.Field):
    """`customFields` of a company, contact or lead.

    Out: every defined key of the record's object type with its value (definitions come from the
    per-request cache: one query per request, whatever the number of fields or rows). In: the raw
    object, handed to the record's service, which validates it (`custom_fields_changes`) — so the
    API, the pages, the admin and imports refuse a value with the same sentence.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("source", "*")
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError("Must be an object of custom field keys and values.")
        return {"custom_fields": data}

    def to_representation(self, instance):
        return custom_fields_represent(instance)


class CustomFieldOptionSerializer(serializers.Serializer):
    value = serializers.RegexField(OPTION_VALUE_PATTERN, help_text="Stable value, stored on records.")
    label = serializers.CharField(max_length=200, help_text="Shown to people; may change.")

    class Meta:
        ref_name = "CustomFieldOption"


class CustomFieldSerializer(ApiModelSerializer):
    """A field the entity's admins added to companies, contacts or leads."""

    object_type = serializers.ChoiceField(choices=CustomFieldObjectType.choices, help_text="Immutable.")
    key = serializers.RegexField(
        KEY_PATTERN,
        max_length=40,
        help_text="Stable name (`customFields.<key>`, `cf.<key>`); unique per object type (409); not a built-in "
        "field's name (400); immutable.",
    )
    label = serializers.CharField(max_length=200)
    type = serializers.ChoiceField(choices=CustomFieldType.choices, help_text="Immutable.")
    options = serializers.ListField(
        child=CustomFieldOptionSerializer(),
        required=False,
        max_length=MAX_OPTIONS,
        help_text="select and multiselect only (required for them): 1–200 options with unique values. Removing an "
        "option still held by a record → 409 with the count.",
    )
    required = serializers.BooleanField(
        required=False, help_text="Must be given on create and cannot be cleared; existing records are not touched."
    )
    unique = serializers.BooleanField(
        required=False, help_text="text, number, email, url only; enforced by the database (409). Immutable."
    )
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    sort_order = serializers.IntegerField(
        min_value=0, required=False, help_text="0-based position among the object type's fields."
    )
    created_at = ApiDateTimeField(read_only=True)
    updated_at = ApiDateTimeField(read_only=True)

    class Meta:
        model = CustomField
        fields = [
            "id",
            "object_type",
            "key",
            "label",
            "type",
            "options",
            "required",
            "unique",
            "description",
            "sort_order",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]


OBJECT_TYPE_PARAMETER = OpenApiParameter(
    "objectType",
    str,
    OpenApiParameter.QUERY,
    required=False,
    enum=CustomFieldObjectType.values,
    description="Only this object type's fields.",
)


class CustomFieldSchema(ApiAutoSchema):
    """The definition list is one object (`{"customFields": [...]}`), not paginated."""

    def _is_list_view(self, serializer=None) -> bool:
        if getattr(self.view, "action", None) == "list":
            return False
        return super()._is_list_view(serializer)


def _list_response():
    from drf_spectacular.utils import inline_serializer

    return inline_serializer(name="CustomFieldList", fields={"customFields": CustomFieldSerializer(many=True)})


@extend_schema_view(
    list=extend_schema(
        summary="List custom fields",
        description="Every definition of the entity (or of one objectType), in objectType then sortOrder; no paging. "
        "Use it to discover the `customFields` keys and the `cf.<key>` filters of the lists.",
        parameters=[OBJECT_TYPE_PARAMETER],
        responses={200: _list_response()},
    ),
    create=extend_schema(
        summary="Create a custom field",
        description="Admins and owners. A key already used for the object type → 409 with existingId; more than "
        "100 fields per object type → 409.",
        responses={201: item_envelope("customField", CustomFieldSerializer), 409: ErrorSerializer},
    ),
    retrieve=extend_schema(summary="Get a custom field"),
    partial_update=extend_schema(
        summary="Update a custom field",
        description="Admins and owners. label, description, required, options (add, relabel; removing an option "
        "held by a record → 409 with the count), sortOrder. key, type, objectType and unique are immutable "
        "(another value → 400).",
        responses={200: item_envelope("customField", CustomFieldSerializer), 409: ErrorSerializer},
    ),
    destroy=extend_schema(
        summary="Delete a custom field",
        description="Admins and owners. The field's values vanish from every record at once; a later field with "
        "the same key starts empty.",
        responses={204: None},
    ),
)
class CustomFieldViewSet(CreateMixin, RetrieveMixin, PartialUpdateMixin, EntityScopedViewSet):
    action_roles = {action: ADMIN for action in ("create", "partial_update", "destroy")}
    queryset = CustomField.objects.all()
    serializer_class = CustomFieldSerializer
    pagination_class = None
    schema = CustomFieldSchema()
    operation_noun = "CustomField"
    item_key = "customField"
    list_key = "customFields"
    ordering = ("object_type", "sort_order", "id")

    def list(self, request, *args, **kwargs):
        object_type = request.query_params.get("objectType")
        if object_type is not None and object_type not in CustomFieldObjectType.values:
            raise exceptions.ValidationError({"objectType": ["Must be company, contact or lead."]})
        rows = custom_field_list(entity=request.entity, object_type=object_type)
        return Response({self.list_key: self.get_serializer(rows, many=True).data})

    def perform_create(self, serializer):
        return custom_field_create(entity=self.request.entity, **serializer.validated_data)

    def perform_update(self, serializer):
        return custom_field_update(definition=serializer.instance, **serializer.validated_data)

    def destroy(self, request, *args, **kwargs):
        custom_field_delete(definition=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


__all__ = [
    "CustomFieldSerializer",
    "CustomFieldViewSet",
    "CustomFieldsField",
    "definitions_for",
    "object_type_of",
]
