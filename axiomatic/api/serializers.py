"""Serializer base and shared fields: camelCase keys, strict input, entity-scoped ids."""

from __future__ import annotations

import re
import uuid

from django.db import models
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from axiomatic.api.entity import ENTITY_PARAM
from axiomatic.models import User
from axiomatic.timestamps import MIN_YEAR, iso_utc

_CAMEL = re.compile(r"_([a-z0-9])")


def to_camel(name: str) -> str:
    return _CAMEL.sub(lambda m: m.group(1).upper(), name)


class ApiDateTimeField(serializers.DateTimeField):
    """Every timestamp of the API: out as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC, four-digit year,
    whatever the year); in, any ISO 8601 time with an offset, refused (400) before the year 1000.

    Refusing those years on input keeps every copy of a timestamp the API writes (change feed,
    webhooks, timeline data, formatted outside DRF) in one shape; the output side still pads
    rows written some other way (admin, shell).
    """

    default_error_messages = {"year": f"Timestamps before the year {MIN_YEAR} are not accepted."}

    def to_internal_value(self, value):
        result = super().to_internal_value(value)
        if result.year < MIN_YEAR:
            self.fail("year")
        return result

    def to_representation(self, value):
        if not value or isinstance(value, str):
            return value or None
        return iso_utc(self.enforce_timezone(value))


class ApiSerializerMixin:
    @classmethod
    def many_init(cls, *args, **kwargs):
        """Lists (`many=True`) use the compiled fast path of `axiomatic.api.fast` (DRF's own
        `many_init`, with that list class as the default)."""
        from axiomatic.api.fast import FastListSerializer

        list_kwargs = {}
        for key in serializers.LIST_SERIALIZER_KWARGS_REMOVE:
            value = kwargs.pop(key, None)
            if value is not None:
                list_kwargs[key] = value
        list_kwargs["child"] = cls(*args, **kwargs)
        list_kwargs.update({key: value for key, value in kwargs.items() if key in serializers.LIST_SERIALIZER_KWARGS})
        list_class = getattr(getattr(cls, "Meta", None), "list_serializer_class", FastListSerializer)
        return list_class(*args, **list_kwargs)

    """Shared behaviour of every API serializer.

    - Field names are written in snake_case (as on the model) and exposed in camelCase.
    - Unknown input fields are a 400 naming them (`entityId` is always allowed); read-only fields
      sent by the client are ignored, as the contract says.
    - Strings are trimmed; datetimes come out in UTC with a `Z` suffix (see REST_FRAMEWORK).
    """

    def get_fields(self):
        fields = super().get_fields()
        renamed = {}
        for name, field in fields.items():
            camel = to_camel(name)
            if camel != name and field.source is None:
                field.source = name
            renamed[camel] = field
        return renamed

    def to_internal_value(self, data):
        if isinstance(data, dict):
            known = set(self.fields) | {ENTITY_PARAM}
            unknown = sorted(str(key) for key in data if key not in known)
            if unknown:
                raise serializers.ValidationError({key: ["Unknown field."] for key in unknown})
            wrong = self._wrong_types(data) or self._too_long(data)
            if wrong:
                raise serializers.ValidationError(wrong)
        return super().to_internal_value(data)

    def _wrong_types(self, data: dict) -> dict[str, list[str]]:
        """JSON types as the schema states them: DRF would also take `0` as the text "0", "5" as the
        integer 5 and "yes" as true; this API refuses them (400 naming the field)."""
        errors = {}
        for name, field in self.fields.items():
            value = data.get(name)
            if value is None or field.read_only or not getattr(field, "strict_json_type", True):
                continue
            expected = _json_type(field)
            if isinstance(field, serializers.ListField) and isinstance(value, list):
                child = _json_type(field.child)
                if child and any(not _is_json_type(item, child[0]) for item in value if item is not None):
                    errors[name] = [f"Each item must be {child[1]}."]
            elif expected and not _is_json_type(value, expected[0]):
                errors[name] = [f"Must be {expected[1]}."]
        return errors

    def _too_long(self, data: dict) -> dict[str, list[str]]:
        """Text longer than the field's maxLength *as sent* is refused, surrounding spaces included
        (DRF would trim first): the schema's `maxLength` is then exactly the rule."""
        errors = {}
        for name, field in self.fields.items():
            value = data.get(name)
            limit = getattr(field, "max_length", None)
            if isinstance(field, serializers.CharField) and isinstance(value, str) and limit and len(value) > limit:
                errors[name] = [field.error_messages["max_length"].format(max_length=limit)]
        return errors


def _json_type(field) -> tuple[str, str] | None:
    """The JSON type a field takes, for the fields DRF would coerce from another type."""
    if isinstance(field, serializers.BooleanField):
        return "boolean", "true or false"
    if isinstance(field, serializers.IntegerField):
        return "integer", "an integer"
    if isinstance(field, serializers.FloatField):
        return "number", "a number"
    if isinstance(field, serializers.CharField | serializers.UUIDField):
        return "string", "a string"
    return None


def _is_json_type(value, json_type: str) -> bool:
    if json_type == "boolean":
        return isinstance(value, bool)
    if json_type == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if json_type == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str)


class ApiSerializer(ApiSerializerMixin, serializers.Serializer):
    pass


class ApiModelSerializer(ApiSerializerMixin, serializers.ModelSerializer):
    """ModelSerializer with the API conventions; blank text is stored as "" and read back as ""."""

    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.DateTimeField: ApiDateTimeField,
    }


class StrictUUIDField(serializers.UUIDField):
    """A UUID given as a string; DRF's field would also take integers, which are no ids here."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)


def _prefetched(field, model) -> dict | None:
    """The rows of `model` a bulk write looked up for all its items at once ({pk: row}, already
    inside the entity), passed as the serializer context's `prefetched`; None: ask the database.

    One query per chunk instead of one per item and field (`crm.bulk`), with the same answer and
    message as the single request's lookup."""
    prefetched = field.context.get("prefetched")
    return None if prefetched is None else prefetched.get(model)


class _IdInBody:
    """DRF's related fields read `""` as null; here an id is a UUID string or null, and `""` is a
    malformed id (400), as the schema's `format: uuid` says."""

    def run_validation(self, data=empty):
        return serializers.Field.run_validation(self, data)


class EntityRelatedField(_IdInBody, serializers.PrimaryKeyRelatedField):
    """An id in a request body, looked up *inside the request's entity*.

    Another entity's id therefore reads exactly like an id that does not exist (400 naming the
    field). `model` is a `TenantModel`; its `for_entity` does the scoping.
    """

    default_error_messages = {
        "does_not_exist": "No {model} with id {pk_value} exists in this entity.",
        "incorrect_type": "Must be a UUID string, not {data_type}.",
    }

    def __init__(self, model=None, **kwargs):
        self.model = model
        kwargs.setdefault("pk_field", serializers.UUIDField(format="hex_verbose"))
        if not kwargs.get("read_only"):
            kwargs["queryset"] = model.objects.all()
        super().__init__(**kwargs)

    def get_queryset(self):
        request = self.context["request"]
        return self.model.objects.for_entity(request.entity)

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, str):
            self.fail("incorrect_type", data_type=type(data).__name__)
        try:
            pk = uuid.UUID(data)
        except ValueError:
            self.fail("incorrect_type", data_type="a malformed string")
        prefetched = _prefetched(self, self.model)
        if prefetched is not None:
            if pk not in prefetched:
                self.fail("does_not_exist", model=self.model._meta.verbose_name, pk_value=data)
            return prefetched[pk]
        queryset = self.get_queryset()
        try:
            return queryset.get(pk=pk)
        except self.model.DoesNotExist:
            self.fail("does_not_exist", model=self.model._meta.verbose_name, pk_value=data)


@extend_schema_field(OpenApiTypes.UUID)
class EntityMemberField(_IdInBody, serializers.RelatedField):
    """A user id that must belong to a member of the request's entity (owners, assignees)."""

    default_error_messages = {
        "not_member": "User {pk_value} is not a member of this entity.",
        "incorrect_type": "Must be a UUID string.",
    }

    def __init__(self, **kwargs):
        if not kwargs.get("read_only"):
            kwargs["queryset"] = User.objects.all()
        super().__init__(**kwargs)

    def get_queryset(self):
        entity = self.context["request"].entity
        return User.objects.filter(memberships__entity=entity)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("incorrect_type")
        try:
            pk = uuid.UUID(data)
        except ValueError:
            self.fail("incorrect_type")
        prefetched = _prefetched(self, User)
        user = prefetched.get(pk) if prefetched is not None else self.get_queryset().filter(pk=pk).first()
        if user is None:
            self.fail("not_member", pk_value=data)
        return user

    def use_pk_only_optimization(self) -> bool:
        return True  # read `owner_id` from the row; no query per item

    def to_representation(self, value):
        return str(value.pk)


# [0-9], not \d: Python's \d also matches other scripts' digits, which JSON Schema's does not.
MONEY_PATTERN = r"^[0-9]{1,12}(\.[0-9]{1,2})?$"
_MONEY = re.compile(r"[0-9]{1,12}(\.[0-9]{1,2})?")


class MoneyField(serializers.DecimalField):
    """Money ≥ 0 with at most 12 integer digits and 2 decimals: out as a string with two fraction
    digits; in as a string matching MONEY_PATTERN (`"1250"`, `"1250.5"`, `"1250.50"`; no sign,
    exponent or spaces) or as a JSON number with at most two decimals."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_digits", 14)
        kwargs.setdefault("decimal_places", 2)
        kwargs.setdefault("min_value", 0)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if isinstance(data, bool):
            self.fail("invalid")
        if isinstance(data, str) and not _MONEY.fullmatch(data):
            self.fail("invalid")
        if isinstance(data, float):
            data = repr(data)
        return super().to_internal_value(data)
