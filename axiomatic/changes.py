"""The change feed: every write to a feed object records its change in the same transaction.

Integrations keep a copy of the CRM in step by pulling `GET /api/crm/changes` or by receiving
webhooks; both carry the change objects recorded here. The rules:

- The services record (never model signals): each write path calls `record_created`,
  `record_updated`, `record_deleted` or `delete_recorded` (deletion with its cascades) inside its
  transaction, so a rolled-back write leaves no change and a committed one always has one. One
  call is one INSERT statement, however many changes it carries (bulk paths record in batches).
- `data` is the object as its GET returns it (`axiomatic.representations`, registered by the
  apps' APIs); for `deleted`, `{"id": ...}`. `previous` (updated, stage_changed) holds the old
  value of every key of `data` that changed.
- `seq` is given at COMMIT by the database (migration 0005): per entity, strictly increasing in
  the order transactions became visible, without gaps, so a reader that saw `seq` n has seen
  every change before it and a cursor on `seq` never skips or repeats (docs/webhooks.md).
- Who acted: the `Actor` a service is given, else the request being served (an API key, a
  signed-in user: `ChangeActorMiddleware`), else the system (tasks, commands).

The core knows no app: apps declare their feed objects (and any actions beyond created, updated
and deleted) with `register_object_type` and their representations with
`axiomatic.representations.register_representation` when they start.
Listeners (`add_listener`, e.g. webhook delivery) hear which entities recorded changes, inside
the transaction, to act after commit.
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import orjson
from django.db import DEFAULT_DB_ALIAS, connections, router, transaction
from django.db.models import F, Model, QuerySet
from django.db.models.deletion import Collector
from django.utils import timezone

from axiomatic.db import is_postgres
from axiomatic.models import EntityCounter
from axiomatic.models_changes import Change
from axiomatic.representations import represent, represent_many

SEQ_COUNTER = "changes.seq"  # the entity's last seq (axiomatic_entitycounter), kept by the trigger
PRUNED_COUNTER = "changes.pruned"  # the entity's highest seq removed by retention
SYSTEM_ACTOR = ("system", None)
CRUD_ACTIONS = ("created", "updated", "deleted")
WITH_PREVIOUS = ("updated", "stage_changed")  # the actions whose changes carry `previous`

Loader = Callable[[QuerySet], QuerySet]


Touches = Callable[[QuerySet], dict]


@dataclass(frozen=True)
class ObjectType:
    name: str
    loader: Loader | None = None  # what representing a row needs (select_related ...)
    # Other feed objects whose representation derives from these rows ({model: pks}), e.g. a
    # contact's companyId from its primary membership: a deletion records their update too.
    touches: Touches | None = None
    extra_actions: tuple[str, ...] = ()  # beyond CRUD_ACTIONS, e.g. lead.stage_changed

    @property
    def actions(self) -> tuple[str, ...]:
        return (*CRUD_ACTIONS, *self.extra_actions)


_object_types: dict[type[Model], ObjectType] = {}
_listeners: list[Callable[[set], None]] = []


def register_object_type(
    model: type[Model],
    name: str,
    *,
    loader: Loader | None = None,
    touches: Touches | None = None,
    extra_actions: tuple[str, ...] = (),
) -> None:
    """Declare `model` a feed object named `name` (`company`, `lead`, ...), from `AppConfig.ready`.

    This registry is the one list of object and event types: the feed's `types` filter, the
    webhook endpoints' choices and the catalogue in docs/webhooks.md all derive from it."""
    _object_types[model] = ObjectType(name, loader, touches, tuple(extra_actions))


def event_types() -> tuple[str, ...]:
    """Every registered `<objectType>.<action>`: the CRUD actions of each type in registration
    order, then the extra actions."""
    declared = list(_object_types.values())
    crud = [f"{item.name}.{action}" for item in declared for action in CRUD_ACTIONS]
    return (*crud, *(f"{item.name}.{action}" for item in declared for action in item.extra_actions))


def object_type_of(model: type[Model]) -> str | None:
    found = _object_types.get(model._meta.concrete_model)
    return found.name if found else None


def add_listener(listener: Callable[[set], None]) -> None:
    """`listener(entity_ids)` runs inside the transaction after each recording."""
    if listener not in _listeners:
        _listeners.append(listener)


# --- who acts -----------------------------------------------------------------------------------

_request: contextvars.ContextVar = contextvars.ContextVar("axiomatic.changes.request", default=None)


class ChangeActorMiddleware:
    """Remembers the request being served, so changes name who made them (read when recorded,
    after the API's authentication has run)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = _request.set(request)
        try:
            return self.get_response(request)
        finally:
            _request.reset(token)


def actor_ref(actor: Any = None) -> tuple[str, str | None]:
    """(type, id) of who acts: the given actor (anything with `type` and `id`, or a dict), else
    the current request's API key or user, else the system."""
    if actor is not None:
        kind, pk = (actor.get("type"), actor.get("id")) if isinstance(actor, dict) else (actor.type, actor.id)
        return str(kind), (str(pk) if pk else None)
    request = _request.get()
    if request is None:
        return SYSTEM_ACTOR
    api_key = getattr(request, "auth", None)
    if getattr(api_key, "prefix", None) and getattr(api_key, "pk", None):
        return "apiKey", str(api_key.pk)
    user = getattr(request, "user", None)
    if user is not None and getattr(user, "is_authenticated", False):
        return "user", str(user.pk)
    return SYSTEM_ACTOR


# --- encoding -----------------------------------------------------------------------------------


def _default(value):
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def to_json(value: Any) -> str:
    return orjson.dumps(value, default=_default).decode()


def new_event_id() -> str:
    return f"evt_{uuid.uuid4().hex}"


# --- building and recording ---------------------------------------------------------------------


@dataclass
class ChangeRecord:
    """A change about to be recorded."""

    entity_id: Any
    object_type: str
    object_id: str
    action: str
    data: dict
    previous: dict | None = None
    actor: tuple[str, str | None] | None = None

    @property
    def type(self) -> str:
        return f"{self.object_type}.{self.action}"


def snapshot(instance: Model) -> dict:
    """`instance` as its GET returns it (take it before a write to compute `previous`)."""
    return dict(represent(instance))


def snapshots(instances: list[Model]) -> list[dict]:
    """`snapshot` of many rows of one model at once (the lists' fast path)."""
    return represent_many(list(instances))


def load(model: type[Model], pks: Iterable, *, using: str | None = None, lock: bool = False) -> dict:
    """Fresh rows of `model` by pk, loaded as their representation needs (optionally locked)."""
    queryset = model._base_manager.using(using or DEFAULT_DB_ALIAS).filter(pk__in=list(pks))
    declared = _object_types.get(model._meta.concrete_model)
    if declared and declared.loader:
        queryset = declared.loader(queryset)
    if lock:
        queryset = queryset.select_for_update(of=("self",)).order_by("pk")
    return {row.pk: row for row in queryset}


def snapshot_fresh(instance: Model, *, lock: bool = False) -> dict | None:
    """The representation of `instance`'s row as stored now (locked with `lock`); None if gone."""
    pk = type(instance)._meta.pk.to_python(instance.pk)  # a task may hand over the id as text
    row = load(type(instance), [pk], lock=lock).get(pk)
    return snapshot(row) if row is not None else None


# Objects of `data` whose `previous` holds only the sub-keys that changed (a record's custom fields:
# one changed key should not repeat the other ninety-nine).
PARTIAL_PREVIOUS_KEYS = ("customFields",)


def changed_fields(before: dict, after: dict) -> dict:
    """The old values of the keys whose values differ (keyed like `data`)."""
    previous = {key: before.get(key) for key, value in after.items() if before.get(key) != value}
    for key in PARTIAL_PREVIOUS_KEYS:
        old, new = previous.get(key), after.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            names = [*new, *(name for name in old if name not in new)]
            previous[key] = {name: old.get(name) for name in names if old.get(name) != new.get(name)}
    return previous


def creation(instance: Model, *, actor: Any = None, data: dict | None = None) -> ChangeRecord:
    return _record_of(instance, "created", data if data is not None else snapshot(instance), None, actor)


def update(
    instance: Model, before: dict | None, *, after: dict | None = None, action: str = "updated", actor: Any = None
) -> ChangeRecord | None:
    """The change from `before` to the instance now (None when no key of its representation changed)."""
    after = after if after is not None else snapshot(instance)
    if before is None:
        return _record_of(instance, "created", after, None, actor)
    previous = changed_fields(before, after)
    if not previous:
        return None
    return _record_of(instance, action, after, previous if action in WITH_PREVIOUS else None, actor)


def creations(instances: Iterable[Model], *, actor: Any = None) -> list[ChangeRecord]:
    """`created` changes of many rows of one model (one batch representation)."""
    rows = list(instances)
    return [creation(row, actor=actor, data=data) for row, data in zip(rows, snapshots(rows), strict=True)]


def updates(rows: Iterable[Model], before: dict, *, action: str = "updated", actor: Any = None) -> list:
    """The changes of many rows of one model since `before` ({pk: snapshot}); None where nothing changed."""
    rows = list(rows)
    return [
        update(row, before.get(row.pk), after=data, action=action, actor=actor)
        for row, data in zip(rows, snapshots(rows), strict=True)
    ]


def deletion(instance: Model | None = None, *, model=None, pk=None, entity_id=None, actor: Any = None) -> ChangeRecord:
    if instance is not None:
        model, pk, entity_id = type(instance), instance.pk, instance.entity_id
    name = object_type_of(model)
    if name is None:
        raise LookupError(f"{model.__name__} is not a feed object (register_object_type)")
    return ChangeRecord(entity_id, name, str(pk), "deleted", {"id": str(pk)}, None, actor_ref(actor))


def _record_of(instance, action, data, previous, actor) -> ChangeRecord:
    name = object_type_of(type(instance))
    if name is None:
        raise LookupError(f"{type(instance).__name__} is not a feed object (register_object_type)")
    if action not in _object_types[type(instance)._meta.concrete_model].actions:
        raise LookupError(f"{name}.{action} is not a registered event type (register_object_type)")
    return ChangeRecord(instance.entity_id, name, str(instance.pk), action, data, previous, actor_ref(actor))


_INSERT = (
    f"INSERT INTO {Change._meta.db_table} "
    "(event_id, entity_id, type, object_type, object_id, occurred_at, actor_type, actor_id, data, previous) "
    "SELECT r.e, r.n, r.t, r.o, r.i, %s, r.a, r.b, r.d, r.p FROM ROWS FROM (json_to_recordset(%s::json) "
    "AS (e text, n uuid, t text, o text, i text, a text, b text, d text, p text)) "
    "WITH ORDINALITY AS r(e, n, t, o, i, a, b, d, p, k) ORDER BY r.k"
)
_COLUMNS = {
    "e": "event_id",
    "n": "entity_id",
    "t": "type",
    "o": "object_type",
    "i": "object_id",
    "a": "actor_type",
    "b": "actor_id",
    "d": "data",
    "p": "previous",
}


def record(records: Iterable[ChangeRecord | None], *, using: str = DEFAULT_DB_ALIAS) -> int:
    """Insert the changes (one statement); returns how many. Call inside the write's transaction."""
    now = timezone.now()
    rows = []
    for item in records:
        if item is None:
            continue
        kind, pk = item.actor or actor_ref()
        rows.append(
            Change(
                event_id=new_event_id(),
                entity_id=item.entity_id,
                type=item.type,
                object_type=item.object_type,
                object_id=item.object_id,
                occurred_at=now,
                actor_type=kind,
                actor_id=pk,
                data=to_json(item.data),
                previous=to_json(item.previous) if item.previous is not None else None,
            )
        )
    if not rows:
        return 0
    connection = connections[using]
    if is_postgres(connection):
        # One statement whatever the number of changes, its rows one JSON text: the driver quotes a
        # single string (quoting nine arrays element by element cost an import 0.2 ms a change).
        payload = [{key: getattr(row, name) for key, name in _COLUMNS.items()} for row in rows]
        with connection.cursor() as cursor:
            cursor.execute(_INSERT, [now, to_json(payload)])
    else:
        _number_now(rows, using=using)  # no commit-time trigger there; SQLite serialises writers
        Change.objects.using(using).bulk_create(rows)
    entity_ids = {row.entity_id for row in rows}
    for listener in _listeners:
        listener(entity_ids)
    return len(rows)


def _number_now(rows: list[Change], *, using: str) -> None:
    with transaction.atomic(using=using):
        for entity_id in dict.fromkeys(row.entity_id for row in rows):
            mine = [row for row in rows if row.entity_id == entity_id]
            counter, _ = EntityCounter.objects.using(using).get_or_create(entity_id=entity_id, name=SEQ_COUNTER)
            EntityCounter.objects.using(using).filter(pk=counter.pk).update(value=F("value") + len(mine))
            last = EntityCounter.objects.using(using).values_list("value", flat=True).get(pk=counter.pk)
            for offset, row in enumerate(mine, start=last - len(mine) + 1):
                row.seq = offset


def record_created(instance: Model, *, actor: Any = None) -> None:
    record([creation(instance, actor=actor)])


def record_updated(instance: Model, before: dict | None, *, action: str = "updated", actor: Any = None) -> bool:
    """Record the update from `before` (a `snapshot`) to the instance now; False if nothing changed."""
    return bool(record([update(instance, before, action=action, actor=actor)]))


def record_deleted(instance: Model, *, actor: Any = None) -> None:
    record([deletion(instance, actor=actor)])


# --- deletion with its cascades -------------------------------------------------------------------


def delete_recorded(objs: Model | Iterable[Model], *, actor: Any = None) -> tuple[int, dict]:
    """Delete like `Model.delete()` and record every feed object the deletion removes (`deleted`,
    cascades included) or changes (`updated`: foreign keys set to null), in the same transaction."""
    objs = [objs] if isinstance(objs, Model) else list(objs)
    if not objs:
        return 0, {}
    using = router.db_for_write(type(objs[0]), instance=objs[0])
    with transaction.atomic(using=using):
        collector = Collector(using=using, origin=objs[0] if len(objs) == 1 else None)
        collector.collect(objs)
        removed: dict[type[Model], dict] = {}  # model → {pk: entity_id}
        for model, instances in collector.data.items():
            if object_type_of(model):
                removed.setdefault(model, {}).update({obj.pk: obj.entity_id for obj in instances})
        for queryset in collector.fast_deletes:
            if object_type_of(queryset.model):
                rows = queryset.values_list("pk", "entity_id")
                removed.setdefault(queryset.model, {}).update(dict(rows))
        touched: dict[type[Model], set] = {}
        for model, rows in removed.items():
            declared = _object_types.get(model)
            if declared and declared.touches:
                for other, pks in declared.touches(model._base_manager.using(using).filter(pk__in=list(rows))).items():
                    touched.setdefault(other._meta.concrete_model, set()).update(pks)
        for (field, _value), batches in collector.field_updates.items():
            model = field.model._meta.concrete_model
            if not object_type_of(model):
                continue
            for batch in batches:
                pks = batch.values_list("pk", flat=True) if isinstance(batch, QuerySet) else [o.pk for o in batch]
                touched.setdefault(model, set()).update(pk for pk in pks if pk not in removed.get(model, {}))
        before = {}
        for model, pks in touched.items():
            pks = {pk for pk in pks if pk not in removed.get(model, {})}
            rows = list(load(model, pks, using=using).values())
            before[model] = {row.pk: data for row, data in zip(rows, snapshots(rows), strict=True)}

        origins = {(type(obj)._meta.concrete_model, obj.pk) for obj in objs}  # the deletion clears pks

        result = collector.delete()

        records: list[ChangeRecord | None] = []
        for model, old in before.items():
            records += updates(load(model, old, using=using).values(), old, actor=actor)
        ordered = sorted(
            ((model, pk, entity_id) for model, rows in removed.items() for pk, entity_id in rows.items()),
            key=lambda item: (item[0]._meta.concrete_model, item[1]) in origins,  # cascades first
        )
        records += [deletion(model=model, pk=pk, entity_id=entity_id, actor=actor) for model, pk, entity_id in ordered]
        record(records, using=using)
    return result
