"""Reads of custom fields: an entity's definitions (once per request), and the conditions that
find records by a custom field's value (filters, option usage, uniqueness).

Definitions are read on every request that shows a company, contact or lead (`customFields` holds
every defined key). A list page costs a pinned number of SQL queries whatever it shows, so the
definitions come from the shared cache (Redis) under a *generation* that every definition write
replaces (right away and again when it commits): a reader never keeps an old generation, and one
that raced a write stored its rows under a generation nobody reads any more. Within one request or
task they are read once (thread memory, dropped when a request or task starts). The thread that
writes a definition reads its entity's from the database until the transaction ends; without a
shared cache (the demo's per-process memory) every request reads them with one query.
"""

from __future__ import annotations

import logging
import threading
import uuid
from decimal import Decimal
from typing import Any

from django.core.cache import caches
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.signals import request_finished, request_started
from django.db import connection, transaction
from django.db.models import BooleanField, DecimalField, F, Func, JSONField, Q, Value
from django.db.models.expressions import RawSQL
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Cast, Collate
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

logger = logging.getLogger("crm.custom_fields")
_local = threading.local()
CACHE_SECONDS = 3600
_GENERATION_KEY = "crm:custom-fields:generation:{entity}"
_DEFINITIONS_KEY = "crm:custom-fields:definitions:{entity}:{generation}"


def _cache() -> dict:
    cache = getattr(_local, "definitions", None)
    if cache is None:
        cache = _local.definitions = {}
    return cache


def _dirty() -> set:
    dirty = getattr(_local, "dirty", None)
    if dirty is None:
        dirty = _local.dirty = set()
    return dirty


def definitions_cache_clear(**_kwargs: Any) -> None:
    """Forget every cached definition of this thread (a request or task starts or ends)."""
    _local.definitions = {}
    _local.dirty = set()


def _shared_cache():
    """The cache every process shares (Redis), or None: a per-process cache could not be told
    that another process changed a definition."""
    cache = caches["default"]
    return None if isinstance(cache, LocMemCache | DummyCache) else cache


def definitions_changed(entity) -> None:
    """A definition of `entity` is being written: this thread reads the entity's definitions from
    the database until the transaction ends, and the shared cache moves to a new generation when
    it commits (and right now, so nobody keeps the old one)."""
    entity_id = str(getattr(entity, "pk", entity))
    _cache().pop(entity_id, None)
    _dirty().add(entity_id)
    _new_generation(entity_id)
    transaction.on_commit(lambda: _new_generation(entity_id), robust=True)
    transaction.on_commit(lambda: _dirty().discard(entity_id), robust=True)


def _new_generation(entity_id: str) -> None:
    _cache().pop(entity_id, None)
    shared = _shared_cache()
    if shared is None:
        return
    try:
        shared.set(_GENERATION_KEY.format(entity=entity_id), uuid.uuid4().hex, None)
    except Exception:  # pragma: no cover - Redis down: readers fall back to the database too
        logger.warning("Could not invalidate the custom field cache of entity %s", entity_id)


def _changed_by_orm(sender, instance: CustomField, **_kwargs: Any) -> None:
    definitions_changed(instance.entity_id)


request_started.connect(definitions_cache_clear, dispatch_uid="crm.custom_fields.request_started")
request_finished.connect(definitions_cache_clear, dispatch_uid="crm.custom_fields.request_finished")
post_save.connect(_changed_by_orm, sender=CustomField, dispatch_uid="crm.custom_fields.saved")
post_delete.connect(_changed_by_orm, sender=CustomField, dispatch_uid="crm.custom_fields.deleted")
try:  # a worker's task starts with fresh definitions too
    from celery.signals import task_prerun

    task_prerun.connect(definitions_cache_clear, weak=False, dispatch_uid="crm.custom_fields.task_prerun")
except ImportError:  # pragma: no cover - Celery is a dependency; the cache still resets per request
    pass


def object_type_of(model_or_instance) -> str:
    model = model_or_instance if isinstance(model_or_instance, type) else type(model_or_instance)
    return MODEL_OBJECT_TYPES[model._meta.concrete_model]


def _load(entity_id: str) -> dict[str, tuple[CustomField, ...]]:
    by_type: dict[str, list[CustomField]] = {object_type: [] for object_type in OBJECT_MODELS}
    for definition in CustomField.objects.for_entity(entity_id).order_by("object_type", "sort_order", "id"):
        by_type.setdefault(definition.object_type, []).append(definition)
    return {object_type: tuple(rows) for object_type, rows in by_type.items()}


def _entity_definitions(entity_id: str) -> dict[str, tuple[CustomField, ...]]:
    """All definitions of the entity by object type: from this request's memory, else the shared
    cache (two Redis reads, no SQL: a list page stays at its pinned query count), else one query."""
    shared = _shared_cache()
    if shared is None or entity_id in _dirty():
        return _load(entity_id)
    try:
        generation_key = _GENERATION_KEY.format(entity=entity_id)
        generation = shared.get(generation_key)
        if generation is None:
            shared.add(generation_key, uuid.uuid4().hex, None)
            generation = shared.get(generation_key)
        key = _DEFINITIONS_KEY.format(entity=entity_id, generation=generation)
        found = shared.get(key)
        if found is not None:
            return found
        loaded = _load(entity_id)
        shared.set(key, loaded, CACHE_SECONDS)
        return loaded
    except Exception:  # Redis unavailable: the database answers
        logger.warning("Custom field cache unavailable; reading definitions from the database", exc_info=True)
        return _load(entity_id)


def definitions_for(*, entity, object_type: str) -> tuple[CustomField, ...]:
    """The entity's definitions for one object type in `sortOrder`: read once per request or task
    (no query at all when the shared cache has them), never stale across requests."""
    entity_id = str(getattr(entity, "pk", entity))
    cache = _cache()
    if entity_id not in cache:
        cache[entity_id] = _entity_definitions(entity_id)
    return cache[entity_id].get(object_type, ())


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


class _Contains(Func):
    """`jsonb_contains(custom_fields, probe)`: what `@>` computes, as a function call, which no
    index condition matches (PostgreSQL only uses operator clauses with an index)."""

    function = "jsonb_contains"
    output_field = BooleanField()


def equals_walk_q(definition: CustomField, stored: Any):
    """The same records as `equals_q`, written so no index serves it: for a value so common that
    reading the list in its order (or the table, for the capped count) meets matches at once, while
    the GIN index would first collect every match (200,000 for one option in five at a million).
    PostgreSQL only (the one caller checks)."""
    probe: Any = [stored] if definition.type == CustomFieldType.MULTISELECT else stored
    if definition.type == CustomFieldType.CURRENCY:
        probe = {"amount": stored}
    return _Contains(F("custom_fields"), Value({definition.storage_key: probe}, output_field=JSONField()))


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
    text = KeyTextTransform(skey, "custom_fields")
    # Dates and UTC timestamps are fixed-width text: byte order is time order (no locale rules).
    return Collate(text, "C") if is_postgres(connection) else text


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
