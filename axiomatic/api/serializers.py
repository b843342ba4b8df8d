"""Serializer base and shared fields: camelCase keys, strict input, entity-scoped ids."""

from __future__ import annotations

import re
import uuid

from django.db import models
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

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
        return super().to_internal_value(data)


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


class EntityRelatedField(serializers.PrimaryKeyRelatedField):
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
        queryset = self.get_queryset()
        try:
            return queryset.get(pk=pk)
        except self.model.DoesNotExist:
            self.fail("does_not_exist", model=self.model._meta.verbose_name, pk_value=data)


@extend_schema_field(OpenApiTypes.UUID)
class EntityMemberField(serializers.RelatedField):
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
        user = self.get_queryset().filter(pk=pk).first()
        if user is None:
            self.fail("not_member", pk_value=data)
        return user

    def use_pk_only_optimization(self) -> bool:
        return True  # read `owner_id` from the row; no query per item

    def to_representation(self, value):
        return str(value.pk)


class MoneyField(serializers.DecimalField):
    """Money: a decimal string with two fraction digits; input as string or number, never float."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_digits", 14)
        kwargs.setdefault("decimal_places", 2)
        kwargs.setdefault("min_value", 0)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if isinstance(data, bool):
            self.fail("invalid")
        if isinstance(data, float):
            data = repr(data)
        return super().to_internal_value(data)
