"""Fast list representation: DRF's own fields, without DRF's per-value machinery.

A list page of 50 rows × 20 fields makes DRF's `to_representation` run a thousand times through
`get_attribute` (source-path walking, exception handling) and field dispatch, which costs many
times the SQL query behind the page. `FastListSerializer` compiles, once per request, each field
of the row serializer into one small accessor:

- a plain attribute (`source` of one name) is read with `operator.attrgetter`; text, UUIDs,
  integers and booleans are converted inline exactly as DRF's fields do;
- a foreign key shown as its id reads the `*_id` column (no related object is touched);
- timestamps the database gave as aware datetimes are written straight in the API's UTC form;
- every other field (method fields, nested objects, money) keeps DRF's own
  `get_attribute`/`to_representation`, so the output is the serializer's to the byte
  (`tests/test_fast_representation.py` compares both on every list).

`OrjsonRenderer` then writes the page with orjson instead of the standard library's encoder.
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from django.db import models
from rest_framework import relations, serializers
from rest_framework.fields import SkipField
from rest_framework.renderers import JSONRenderer

from axiomatic.api.serializers import ApiDateTimeField
from axiomatic.timestamps import iso_utc

Accessor = Callable[[Any], Any]

_TEXT_FIELDS = (serializers.CharField, serializers.EmailField, serializers.URLField)


def _text(getter: Accessor) -> Accessor:
    def read(row):
        value = getter(row)
        return value if value is None or type(value) is str else str(value)

    return read


def _uuid(getter: Accessor) -> Accessor:
    def read(row):
        value = getter(row)
        return None if value is None else str(value)

    return read


def _int(getter: Accessor) -> Accessor:
    def read(row):
        value = getter(row)
        return None if value is None else int(value)

    return read


def _timestamp(field: ApiDateTimeField, getter: Accessor) -> Accessor:
    def read(row):
        value = getter(row)
        if value is None or getattr(value, "tzinfo", None) is None:  # naive or text: the field's own way
            return None if value is None else field.to_representation(value)
        return iso_utc(value)

    return read


def _generic(field: serializers.Field) -> Accessor:
    """DRF's own path for one field (what `Serializer.to_representation` does per field)."""

    def read(row):
        try:
            attribute = field.get_attribute(row)
        except SkipField:  # pragma: no cover - write-only fields are not readable fields
            raise
        check = attribute.pk if isinstance(attribute, relations.PKOnlyObject) else attribute
        return None if check is None else field.to_representation(attribute)

    return read


def _fk_id_accessor(field: serializers.Field, model: type[models.Model] | None) -> Accessor | None:
    """`ownerUserId`-style fields: the foreign key's id column, read without the related row."""
    if model is None or len(field.source_attrs) != 1:
        return None
    try:
        model_field = model._meta.get_field(field.source_attrs[0])
    except Exception:
        return None
    if not isinstance(model_field, models.ForeignKey):
        return None
    pk_field = getattr(field, "pk_field", None)
    if pk_field is not None and not isinstance(pk_field, serializers.UUIDField):
        return None
    if not getattr(field, "use_pk_only_optimization", lambda: False)():
        return None
    return _uuid(operator.attrgetter(model_field.attname))


def compile_field(field: serializers.Field, model: type[models.Model] | None) -> Accessor:
    """The fastest accessor that gives exactly what DRF gives for this field."""
    simple = len(field.source_attrs) == 1 and field.source != "*"
    if isinstance(field, relations.RelatedField):
        return _fk_id_accessor(field, model) or _generic(field)
    if not simple or isinstance(field, serializers.SerializerMethodField):
        return _generic(field)
    getter = operator.attrgetter(field.source_attrs[0])
    kind = type(field)
    if kind in _TEXT_FIELDS:
        return _text(getter)
    if kind is serializers.UUIDField and getattr(field, "uuid_format", "hex_verbose") == "hex_verbose":
        return _uuid(getter)
    if kind is serializers.IntegerField:
        return _int(getter)
    if kind is ApiDateTimeField:
        return _timestamp(field, getter)
    if kind is serializers.BooleanField:
        return getter  # model booleans are already True/False/None
    if isinstance(field, serializers.ChoiceField) and not isinstance(field, serializers.MultipleChoiceField):
        mapping = field.choice_strings_to_values

        def read_choice(row):
            value = getter(row)
            if value in ("", None):
                return value
            return mapping.get(str(value), value)

        return read_choice
    return _generic(field)


class FastListSerializer(serializers.ListSerializer):
    """Represents a page of rows with compiled per-field accessors (see the module docstring)."""

    def to_representation(self, data):
        rows = data.all() if isinstance(data, models.manager.BaseManager) else data
        rows = rows if isinstance(rows, list) else list(rows)
        if rows and isinstance(rows[0], Mapping):  # plain data (the dashboard's figures): DRF's path
            return super().to_representation(rows)
        child = self.child
        model = getattr(getattr(child, "Meta", None), "model", None)
        plan = [(name, compile_field(field, model)) for name, field in child.fields.items() if not field.write_only]
        return [{name: read(row) for name, read in plan} for row in rows]


class OrjsonRenderer(JSONRenderer):
    """The API's JSON, written by orjson (compact, UTF-8, as the standard renderer's output)."""

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        return orjson.dumps(data, default=_default, option=orjson.OPT_NON_STR_KEYS)


def _default(value):
    """What orjson does not know, as DRF's encoder writes it."""
    from rest_framework.utils.encoders import JSONEncoder

    if isinstance(value, uuid.UUID):
        return str(value)
    return JSONEncoder().default(value)
