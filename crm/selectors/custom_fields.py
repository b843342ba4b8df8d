"""Reads of custom fields: an entity's definitions (once per request), and the conditions that
find records by a custom field's value (filters, option usage, uniqueness).

Definitions are read on every request that shows a company, contact or lead (`customFields` holds
every defined key), so they are cached for the duration of one request or task per entity and
object type: one query however many fields and rows, and never stale across requests. The cache
is dropped when a request or Celery task starts and whenever this process writes a definition.
"""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

from django.core.signals import request_finished, request_started
from django.db import connection
from django.db.models import DecimalField, Q
from django.db.models.expressions import RawSQL
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Cast
from django.db.models.signals import post_delete, post_save

from axiomatic.db import is_postgres
from crm.models import Company, Contact, CustomField, Lead
from crm.models.custom_fields import CustomFieldObjectType, CustomFieldType

OBJECT_MODELS: dict[str, type] = {
    CustomFieldObjectType.COMPANY: Company,
    CustomFieldObjectType.CONTACT: Contact,
    CustomFieldObjectType.LEAD: Lead,
}
MODEL_OBJECT_TYPES = {model: object_type for object_type, model in OBJECT_MODELS.items()}

_local = threading.local()


def _cache() -> dict:
    cache = getattr(_local, "definitions", None)
    if cache is None:
        cache = _local.definitions = {}
    return cache


def definitions_cache_clear(**_kwargs: Any) -> None:
    """Forget every cached definition of this thread (a request or task starts, a definition changed)."""
    _local.definitions = {}


request_started.connect(definitions_cache_clear, dispatch_uid="crm.custom_fields.request_started")
request_finished.connect(definitions_cache_clear, dispatch_uid="crm.custom_fields.request_finished")
post_save.connect(definitions_cache_clear, sender=CustomField, dispatch_uid="crm.custom_fields.saved")
post_delete.connect(definitions_cache_clear, sender=CustomField, dispatch_uid="crm.custom_fields.deleted")
try:  # a worker's task starts with fresh definitions too
    from celery.signals import task_prerun

    task_prerun.connect(definitions_cache_clear, weak=False, dispatch_uid="crm.custom_fields.task_prerun")
except ImportError:  # pragma: no cover - Celery is a dependency; the cache still resets per request
    pass


def object_type_of(model_or_instance) -> str:
    model = model_or_instance if isinstance(model_or_instance, type) else type(model_or_instance)
    return MODEL_OBJECT_TYPES[model._meta.concrete_model]


def definitions_for(*, entity, object_type: str) -> tuple[CustomField, ...]:
    """The entity's definitions for one object type in `sortOrder` (cached for the request)."""
    entity_id = getattr(entity, "pk", entity)
    key = (str(entity_id), object_type)
    cache = _cache()
    if key not in cache:
        cache[key] = tuple(
            CustomField.objects.for_entity(entity_id).filter(object_type=object_type).order_by("sort_order", "id")
        )
    return cache[key]


def definitions_by_key(*, entity, object_type: str) -> dict[str, CustomField]:
    return {definition.key: definition for definition in definitions_for(entity=entity, object_type=object_type)}


def custom_field_list(*, entity, object_type: str | None = None):
    """Every definition of the entity (one object type, or all) in objectType, then sortOrder."""
    queryset = CustomField.objects.for_entity(entity)
    if object_type:
        queryset = queryset.filter(object_type=object_type)
    return queryset.order_by("object_type", "sort_order", "id")


# --- conditions on stored values ------------------------------------------------------------------


def has_value_q(definition: CustomField) -> Q:
    """Records holding a value for the field (null is never stored: clearing removes the key)."""
    return Q(custom_fields__has_key=definition.storage_key)


def equals_q(definition: CustomField, stored: Any) -> Q:
    """Records whose value equals `stored` (a stored form; for multiselect: holds that option; for
    currency: that amount). On PostgreSQL one `@>` containment, served by the GIN index."""
    skey = definition.storage_key
    kind = definition.type
    if kind == CustomFieldType.MULTISELECT:
        probe: Any = [stored]
    elif kind == CustomFieldType.CURRENCY:
        probe = {"amount": stored}
    else:
        probe = stored
    if is_postgres(connection):
        return Q(custom_fields__contains={skey: probe})
    # SQLite (the demo): the same meaning through JSON functions.
    if kind == CustomFieldType.MULTISELECT:
        return Q(
            pk__in=RawSQL(
                f"SELECT t.id FROM {definition_table(definition)} t, json_each(t.custom_fields, %s) j "
                "WHERE j.value = %s",
                [f'$."{skey}"', stored],
            )
        )
    if kind == CustomFieldType.CURRENCY:
        return Q(**{f"custom_fields__{skey}__amount": stored})
    return Q(**{f"custom_fields__{skey}": stored})


def definition_table(definition: CustomField) -> str:
    return OBJECT_MODELS[definition.object_type]._meta.db_table


def ordered_value(definition: CustomField):
    """The expression that orders a field's values (numbers and amounts as numbers, dates and UTC
    timestamps as their fixed-width text), for `.gte` / `.lte`."""
    skey = definition.storage_key
    if definition.type == CustomFieldType.NUMBER:
        return Cast(KeyTextTransform(skey, "custom_fields"), DecimalField(max_digits=30, decimal_places=6))
    if definition.type == CustomFieldType.CURRENCY:
        return Cast(
            KeyTextTransform("amount", KeyTransform(skey, "custom_fields")),
            DecimalField(max_digits=30, decimal_places=2),
        )
    return KeyTextTransform(skey, "custom_fields")


def range_q(queryset, definition: CustomField, *, lookup: str, bound: Any):
    """`queryset` narrowed to values ≥ (`gte`) or ≤ (`lte`) `bound` (in the stored form)."""
    alias = f"_cf_{definition.storage_key}"
    if isinstance(bound, Decimal | int):
        bound = Decimal(bound)
    return queryset.alias(**{alias: ordered_value(definition)}).filter(**{f"{alias}__{lookup}": bound})


def records_holding(definition: CustomField):
    """The entity's records that hold a value for the field."""
    model = OBJECT_MODELS[definition.object_type]
    return model.objects.for_entity(definition.entity_id).filter(has_value_q(definition))


def records_with_value(definition: CustomField, stored: Any):
    """The entity's records whose value is (or, for multiselect, holds) `stored`."""
    model = OBJECT_MODELS[definition.object_type]
    return model.objects.for_entity(definition.entity_id).filter(equals_q(definition, stored))
