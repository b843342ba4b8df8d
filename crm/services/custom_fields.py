"""Custom fields: the definitions' rules and the one validator of record values.

Admins define fields per object type (company, contact, lead); records keep the values in their
`custom_fields` JSON column, keyed by the definition's `storage_key` (its id), in a *stored form*
chosen so the database can compare them: numbers as canonical decimal text, datetimes as
fixed-width UTC text, e-mails lower-cased, multiselect options in the definition's order, amounts
with two decimals. Null is never stored: clearing a value removes its key.

Every path that writes a record (the API, the pages, the admin, imports, batches, merges) calls
`custom_fields_take` / `custom_fields_changes` here, so a value is refused with the same sentence
everywhere, and `custom_fields_represent` gives the API shape (`{key: value}`, every defined key).

Why values are keyed by definition id and not by `key`: deleting a definition must hide its values
at once and a later field with the same key must start empty. Keyed by id, both hold the moment the
definition row is gone (responses only show defined fields, and a new field has a new id), without
rewriting every record inside the request; `custom_field_values_purge` (a Celery task) removes the
orphaned values afterwards in small batches, only to reclaim space.

Uniqueness (`unique: true`) is enforced by PostgreSQL: a partial unique index per field on the
md5 of the stored text, created and dropped with the definition through a SECURITY DEFINER function
(the application's role owns no table, see `axiomatic.rls` and crm migration 0016). A write that
trips it becomes a 409 naming the record that holds the value.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db import IntegrityError, connection, transaction
from django.db.models import Max
from django.utils.dateparse import parse_datetime

from axiomatic import errors
from axiomatic.currencies import ISO_4217
from axiomatic.db import is_postgres
from axiomatic.models import Entity, Membership
from axiomatic.timestamps import MIN_YEAR, iso_utc
from crm.models import CustomField
from crm.models.custom_fields import CustomFieldObjectType, CustomFieldType
from crm.selectors.custom_fields import (
    OBJECT_MODELS,
    definitions_changed,
    definitions_for,
    equals_q,
    object_type_of,
    records_holding,
    records_with_value,
)

KEY_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
OPTION_VALUE_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,59}$"
_KEY = re.compile(KEY_PATTERN)
_OPTION_VALUE = re.compile(OPTION_VALUE_PATTERN)
MAX_FIELDS_PER_TYPE = 100
MAX_OPTIONS = 200
MAX_MULTISELECT_VALUES = 50
MAX_TEXT = 2000
MAX_LABEL = 200
MAX_DESCRIPTION = 2000
MAX_URL = 2000
MAX_EMAIL = 254
NUMBER_INTEGER_DIGITS = 12
NUMBER_FRACTION_DIGITS = 6
UNIQUE_TYPES = frozenset({CustomFieldType.TEXT, CustomFieldType.NUMBER, CustomFieldType.EMAIL, CustomFieldType.URL})
OPTION_TYPES = frozenset({CustomFieldType.SELECT, CustomFieldType.MULTISELECT})
RANGE_TYPES = frozenset(
    {CustomFieldType.NUMBER, CustomFieldType.DATE, CustomFieldType.DATETIME, CustomFieldType.CURRENCY}
)
IMMUTABLE = ("key", "type", "object_type", "unique")
UNIQUE_INDEX_FUNCTION = "crm_custom_field_unique_index"
logger = logging.getLogger("crm.custom_fields")

# Names of each object's built-in fields (snake_case, as keys are written): API fields included,
# so `customFields.name` can never be mistaken for `name` in an import mapping or a form.
_BUILT_IN_EXTRA = {
    CustomFieldObjectType.COMPANY: {"owner_user_id", "archived_at", "custom_fields"},
    CustomFieldObjectType.CONTACT: {"full_name", "company_id", "owner_user_id", "companies", "custom_fields"},
    CustomFieldObjectType.LEAD: {
        "company_id",
        "contact_id",
        "stage_id",
        "status",
        "weighted_value",
        "owner_user_id",
        "closed_at",
        "stage_changed_at",
        "custom_fields",
    },
}
_COMMON_BUILT_IN = {"id", "entity", "entity_id", "created_at", "updated_at"}


def built_in_names(object_type: str) -> frozenset[str]:
    """Keys a custom field of `object_type` may not take: the object's own field names."""
    model = OBJECT_MODELS[object_type]
    names = set(_COMMON_BUILT_IN) | _BUILT_IN_EXTRA[object_type]
    for model_field in model._meta.get_fields():
        names.add(model_field.name)
        attname = getattr(model_field, "attname", None)
        if attname:
            names.add(attname)
    return frozenset(name.lower() for name in names)


# --- the value validators, one per type -----------------------------------------------------------


class _Refused(Exception):
    """A value the type does not take; the message is the one the caller shows."""


def _text(definition: CustomField, raw: Any) -> str | None:
    if not isinstance(raw, str):
        raise _Refused("Must be a string.")
    value = raw.strip()
    if len(value) > MAX_TEXT:
        raise _Refused(f"Ensure this value has at most {MAX_TEXT} characters.")
    return value or None


def _decimal_of(raw: Any, *, message: str) -> Decimal:
    if isinstance(raw, bool):
        raise _Refused(message)
    if isinstance(raw, int):
        return Decimal(raw)
    if isinstance(raw, float):
        raw = repr(raw)
    elif isinstance(raw, str):
        if not re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", raw.strip()):
            raise _Refused(message)
        raw = raw.strip()
    else:
        raise _Refused(message)
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise _Refused(message) from None
    if not value.is_finite():
        raise _Refused(message)
    return value


def number_normalise(raw: Any) -> str:
    """A number (JSON number or decimal string) → canonical decimal text (`"12.50"` → `"12.5"`)."""
    message = (
        f"Must be a number with at most {NUMBER_INTEGER_DIGITS + NUMBER_FRACTION_DIGITS} digits, "
        f"{NUMBER_FRACTION_DIGITS} of them after the decimal point."
    )
    value = _decimal_of(raw, message=message)
    _sign, digits, exponent = value.normalize().as_tuple()
    fraction = max(0, -exponent)
    integer = max(0, len(digits) + exponent)
    if fraction > NUMBER_FRACTION_DIGITS or integer > NUMBER_INTEGER_DIGITS:
        raise _Refused(message)
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def _number(definition: CustomField, raw: Any) -> str:
    return number_normalise(raw)


def date_normalise(raw: Any) -> str:
    if not isinstance(raw, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", raw.strip()):
        raise _Refused("Must be a date as YYYY-MM-DD.")
    try:
        value = date.fromisoformat(raw.strip())
    except ValueError:
        raise _Refused("Must be a date as YYYY-MM-DD.") from None
    if value.year < MIN_YEAR:
        raise _Refused(f"Dates before the year {MIN_YEAR} are not accepted.")
    return value.isoformat()


def _date(definition: CustomField, raw: Any) -> str:
    return date_normalise(raw)


def datetime_normalise(raw: Any) -> str:
    """ISO 8601 with an offset → `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC, fixed width, so the text orders
    as the times do)."""
    message = "Must be an ISO 8601 date and time with a time zone offset, e.g. 2026-03-01T09:30:00Z."
    if not isinstance(raw, str):
        raise _Refused(message)
    try:
        value = parse_datetime(raw.strip())
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise _Refused(message)
    value = value.astimezone(UTC)
    if value.year < MIN_YEAR:
        raise _Refused(f"Timestamps before the year {MIN_YEAR} are not accepted.")
    return iso_utc(value)


def _datetime(definition: CustomField, raw: Any) -> str:
    return datetime_normalise(raw)


def _boolean(definition: CustomField, raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise _Refused("Must be true or false.")
    return raw


def _option(definition: CustomField, raw: Any) -> str:
    if not isinstance(raw, str) or raw not in definition.option_values:
        raise _Refused(f"{raw!r} is not one of the options: {', '.join(definition.option_values)}.")
    return raw


def _select(definition: CustomField, raw: Any) -> str:
    return _option(definition, raw)


def _multiselect(definition: CustomField, raw: Any) -> list[str] | None:
    if not isinstance(raw, list):
        raise _Refused("Must be a list of option values.")
    if len(raw) > MAX_MULTISELECT_VALUES:
        raise _Refused(f"At most {MAX_MULTISELECT_VALUES} options.")
    chosen = [_option(definition, item) for item in raw]
    if len(set(chosen)) != len(chosen):
        raise _Refused("Each option may be given once.")
    order = {value: index for index, value in enumerate(definition.option_values)}
    return sorted(chosen, key=order.__getitem__) or None


_URL = URLValidator(schemes=["http", "https"])


def _url(definition: CustomField, raw: Any) -> str | None:
    if not isinstance(raw, str):
        raise _Refused("Must be a string.")
    value = raw.strip()
    if not value:
        return None
    if len(value) > MAX_URL:
        raise _Refused(f"Ensure this value has at most {MAX_URL} characters.")
    try:
        _URL(value)
    except ValidationError:
        raise _Refused("Enter a valid http or https URL.") from None
    return value


def email_normalise(raw: Any) -> str | None:
    if not isinstance(raw, str):
        raise _Refused("Must be a string.")
    value = raw.strip().lower()
    if not value:
        return None
    if len(value) > MAX_EMAIL:
        raise _Refused(f"Ensure this value has at most {MAX_EMAIL} characters.")
    try:
        validate_email(value)
    except ValidationError:
        raise _Refused("Enter a valid email address.") from None
    return value


def _email(definition: CustomField, raw: Any) -> str | None:
    return email_normalise(raw)


def _user(definition: CustomField, raw: Any) -> str:
    if not isinstance(raw, str):
        raise _Refused("Must be a user id (a UUID string).")
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise _Refused("Must be a user id (a UUID string).") from None


def amount_normalise(raw: Any) -> str:
    message = "amount must be a decimal ≥ 0 with at most 12 digits before and 2 after the point."
    if isinstance(raw, str) and not re.fullmatch(r"[0-9]{1,12}(\.[0-9]{1,2})?", raw):
        raise _Refused(message)
    value = _decimal_of(raw, message=message)
    if value < 0 or value != value.quantize(Decimal("0.01")) or value >= Decimal(10) ** 12:
        raise _Refused(message)
    return str(value.quantize(Decimal("0.01")))


def _currency(definition: CustomField, raw: Any) -> dict:
    if not isinstance(raw, dict) or set(raw) != {"currency", "amount"}:
        raise _Refused('Must be an object {"currency": "EUR", "amount": "12.50"}.')
    code = raw["currency"]
    if not isinstance(code, str) or code not in ISO_4217:
        raise _Refused("currency must be an ISO 4217 code such as EUR.")
    return {"currency": code, "amount": amount_normalise(raw["amount"])}


VALIDATORS = {
    CustomFieldType.TEXT: _text,
    CustomFieldType.NUMBER: _number,
    CustomFieldType.DATE: _date,
    CustomFieldType.DATETIME: _datetime,
    CustomFieldType.BOOLEAN: _boolean,
    CustomFieldType.SELECT: _select,
    CustomFieldType.MULTISELECT: _multiselect,
    CustomFieldType.URL: _url,
    CustomFieldType.EMAIL: _email,
    CustomFieldType.USER: _user,
    CustomFieldType.CURRENCY: _currency,
}


def error_field(key: str) -> str:
    """How a value's refusal names its input: `customFields.<key>` (the API's details key)."""
    return f"customFields.{key}"


def custom_field_value_normalise(definition: CustomField, raw: Any) -> Any:
    """One value (as the API takes it) → its stored form, or None (clear); `Invalid` if refused.
    Users are checked for membership by `custom_fields_changes` (all of them in one query)."""
    if raw is None:
        return None
    try:
        return VALIDATORS[definition.type](definition, raw)
    except _Refused as refused:
        raise errors.Invalid(f"customFields.{definition.key}: {refused}", field=error_field(definition.key)) from None


def custom_field_filter_value(definition: CustomField, raw: str, *, bound: bool) -> Any:
    """A filter's query-string value (`cf.<key>=...`) in the stored form it is compared with, by the
    same normalisers as the values (`Invalid` with one sentence when malformed). `bound`: for
    `.gte`/`.lte`, numbers and amounts come back as Decimals."""
    kind = definition.type
    if raw is None or (raw.strip() == "" and kind != CustomFieldType.TEXT) or raw == "":
        raise errors.Invalid("Give a value (use cf.<key>.empty=true for records without one).")
    try:
        if kind == CustomFieldType.BOOLEAN:
            if raw not in ("true", "false"):
                raise _Refused("Must be true or false.")
            return raw == "true"
        if kind == CustomFieldType.NUMBER:
            value = number_normalise(raw)
            return Decimal(value) if bound else value
        if kind == CustomFieldType.CURRENCY:
            value = amount_normalise(raw)
            return Decimal(value) if bound else value
        if kind == CustomFieldType.DATETIME:
            # An unencoded "+" of an offset arrives as a space.
            return datetime_normalise(re.sub(r" (?=[0-9]{2}:?[0-9]{2}$)", "+", raw))
        if kind == CustomFieldType.MULTISELECT:
            return _option(definition, raw)
        value = VALIDATORS[kind](definition, raw)
    except _Refused as refused:
        raise errors.Invalid(str(refused)) from None
    if value is None:
        raise errors.Invalid("Give a value (use cf.<key>.empty=true for records without one).")
    return value


@dataclass
class ValueChanges:
    """What a write does to a record's custom fields: values to set and keys to clear (stored form)."""

    definitions: tuple[CustomField, ...]
    values: dict[str, Any] = field(default_factory=dict)
    cleared: set[str] = field(default_factory=set)

    def merged(self, stored: dict | None) -> dict:
        """The record's new `custom_fields`: `stored` (values of deleted fields dropped) with the changes."""
        defined = {definition.storage_key for definition in self.definitions}
        result = {key: value for key, value in (stored or {}).items() if key in defined and key not in self.cleared}
        result.update(self.values)
        return result

    def unique_values(self) -> list[tuple[CustomField, Any]]:
        return [(d, self.values[d.storage_key]) for d in self.definitions if d.unique and d.storage_key in self.values]


def custom_fields_changes(*, entity, object_type: str, values: Any, partial: bool) -> ValueChanges:
    """Validate `values` (the API's `customFields`: `{key: value}`, a partial object) against the
    entity's definitions of `object_type`.

    Unknown keys, values of the wrong type and options that do not exist are refused, every
    refusal at once, each keyed `customFields.<key>`. On create (`partial=False`) every required
    field must be given; on update a required field cannot be cleared. Null clears (so does an
    empty text or list). Returns the changes in stored form; apply them with `ValueChanges.merged`.
    """
    definitions = definitions_for(entity=entity, object_type=object_type)
    changes = ValueChanges(definitions=definitions)
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise errors.Invalid("customFields must be an object of custom field keys and values.", field="customFields")
    by_key = {definition.key: definition for definition in definitions}
    problems: dict[str, list[str]] = {}
    users: dict[str, str] = {}
    for key, raw in values.items():
        definition = by_key.get(key)
        if definition is None:
            problems[error_field(str(key))] = ["Unknown custom field."]
            continue
        try:
            stored = custom_field_value_normalise(definition, raw)
        except errors.Invalid as invalid:
            problems.update(invalid.field_errors)
            continue
        if stored is None:
            if definition.required:
                message = "This field is required." if not partial else "This field is required and cannot be cleared."
                problems[error_field(key)] = [message]
            changes.cleared.add(definition.storage_key)
        else:
            changes.values[definition.storage_key] = stored
            if definition.type == CustomFieldType.USER:
                users[key] = stored
    if not partial:
        for definition in definitions:
            if definition.required and definition.key not in values:
                problems[error_field(definition.key)] = ["This field is required."]
    if users:
        members = {
            str(pk)
            for pk in Membership.objects.filter(
                entity_id=getattr(entity, "pk", entity), user_id__in=users.values()
            ).values_list("user_id", flat=True)
        }
        for key, user_id in users.items():
            if user_id not in members:
                problems[error_field(key)] = [f"User {user_id} is not a member of this entity."]
    if problems:
        summary = " ".join(f"{name}: {' '.join(messages)}" for name, messages in sorted(problems.items()))
        raise errors.Invalid(f"Invalid custom field values. {summary}", fields=problems)
    return changes


def custom_fields_take(fields: dict, *, entity, model: type, partial: bool) -> ValueChanges | None:
    """For the record services: pop the raw `custom_fields` from a write's keyword fields and validate
    it. A create always validates (required fields); an update only when `custom_fields` was sent."""
    if partial and "custom_fields" not in fields:
        return None
    return custom_fields_changes(
        entity=entity, object_type=object_type_of(model), values=fields.pop("custom_fields", None), partial=partial
    )


def custom_fields_apply(instance, changes: ValueChanges | None, *, fresh: bool) -> None:
    """Set the record's `custom_fields` to its stored values with `changes` applied. `fresh`: read
    the stored values from the database first (call it with the row locked: a concurrent write
    of other keys is kept, not overwritten)."""
    if changes is None:
        return
    stored = instance.custom_fields
    if fresh and instance.pk is not None:
        stored = type(instance)._base_manager.filter(pk=instance.pk).values_list("custom_fields", flat=True).first()
    instance.custom_fields = changes.merged(stored)


def custom_fields_conflict(instance) -> None:
    """After a unique violation: the 409 naming the record that holds a unique field's value
    (returns quietly when no custom field is the cause)."""
    stored = instance.custom_fields or {}
    for definition in definitions_for(entity=instance.entity_id, object_type=object_type_of(instance)):
        if not definition.unique or definition.storage_key not in stored:
            continue
        value = stored[definition.storage_key]
        existing = records_with_value(definition, value).exclude(pk=instance.pk).values_list("pk", flat=True).first()
        if existing is not None:
            raise errors.Conflict(
                f"Another record already has {definition.label} = {value} (customFields.{definition.key} is unique).",
                existing_id=existing,
                field=error_field(definition.key),
            )


def custom_fields_ensure_unique(instance) -> None:
    """Before a write on SQLite (the demo has no unique expression indexes): the same 409 as the
    database gives PostgreSQL writers, by looking first."""
    if not is_postgres(connection):
        custom_fields_conflict(instance)


def _holds_unique_value(instance) -> bool:
    stored = instance.custom_fields or {}
    return any(
        definition.unique and definition.storage_key in stored
        for definition in definitions_for(entity=instance.entity_id, object_type=object_type_of(instance))
    )


def custom_fields_save(instance, **save_kwargs) -> None:
    """Save a record, turning a unique custom field's violation into its 409 (in a savepoint only
    when the record holds a unique field's value: the common write pays nothing)."""
    if not _holds_unique_value(instance):
        instance.save(**save_kwargs)
        return
    custom_fields_ensure_unique(instance)
    try:
        with transaction.atomic():
            instance.save(**save_kwargs)
    except IntegrityError:
        custom_fields_conflict(instance)
        raise


def custom_fields_represent(instance, definitions: Iterable[CustomField] | None = None) -> dict[str, Any]:
    """The record's `customFields` as the API shows it: every defined key, null where unset;
    numbers as strings, datetimes in UTC with Z, currencies as `{currency, amount}`."""
    if definitions is None:
        definitions = definitions_for(entity=instance.entity_id, object_type=object_type_of(instance))
    stored = instance.custom_fields or {}
    result = {}
    for definition in definitions:
        value = stored.get(definition.storage_key)
        result[definition.key] = (
            dict(value) if isinstance(value, dict) else (list(value) if isinstance(value, list) else value)
        )
    return result


def custom_fields_changed(before: dict, after: dict) -> dict[str, list]:
    """`{"customFields.<key>": [old, new]}` for each key whose API value changed (timeline data)."""
    return {error_field(key): [before.get(key), value] for key, value in after.items() if before.get(key) != value}


def custom_field_labels(*, entity, object_type: str) -> dict[str, str]:
    """`{"customFields.<key>": label}`, to name changed fields in a readable summary."""
    return {error_field(d.key): d.label for d in definitions_for(entity=entity, object_type=object_type)}


# --- definitions --------------------------------------------------------------------------------


def _options_normalise(kind: str, options: Any) -> list[dict]:
    if kind not in OPTION_TYPES:
        if options:
            raise errors.Invalid("Only select and multiselect fields take options.", field="options")
        return []
    if not isinstance(options, list) or not options:
        raise errors.Invalid(f"{kind} fields need options: a list of {{value, label}}.", field="options")
    if len(options) > MAX_OPTIONS:
        raise errors.Invalid(f"At most {MAX_OPTIONS} options.", field="options")
    result, seen = [], set()
    for option in options:
        if not isinstance(option, dict) or not set(option) <= {"value", "label"} or "value" not in option:
            raise errors.Invalid("Each option is an object {value, label}.", field="options")
        value = option["value"]
        if not isinstance(value, str) or not _OPTION_VALUE.match(value):
            raise errors.Invalid(
                f"Option value {value!r} must match {OPTION_VALUE_PATTERN} (lower-case letters, digits, _ and -).",
                field="options",
            )
        if value in seen:
            raise errors.Invalid(f"Option value {value!r} is given twice.", field="options")
        seen.add(value)
        label = option.get("label", value)
        if not isinstance(label, str) or not label.strip() or len(label.strip()) > MAX_LABEL:
            raise errors.Invalid(f"Option {value!r} needs a label of 1–{MAX_LABEL} characters.", field="options")
        result.append({"value": value, "label": label.strip()})
    return result


def _label_normalise(label: Any) -> str:
    if not isinstance(label, str) or not label.strip():
        raise errors.Invalid("label is required.", field="label")
    label = label.strip()
    if len(label) > MAX_LABEL:
        raise errors.Invalid(f"label has at most {MAX_LABEL} characters.", field="label")
    return label


def _description_normalise(description: Any) -> str:
    if description is None:
        return ""
    if not isinstance(description, str) or len(description.strip()) > MAX_DESCRIPTION:
        raise errors.Invalid(f"description is text of at most {MAX_DESCRIPTION} characters.", field="description")
    return description.strip()


def _lock_definitions(entity_id, object_type: str) -> None:
    """Serialise definition writes of one entity and object type (the 100-field limit, sortOrder)."""
    if is_postgres(connection):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))", [f"crm.custom_fields:{entity_id}:{object_type}"]
            )


def _unique_index(definition: CustomField) -> None:
    """Create (definition present and unique) or drop (definition gone) its unique index, through the
    SECURITY DEFINER function of crm migration 0016 (the app role may not create indexes)."""
    if not is_postgres(connection):
        return
    with connection.cursor() as cursor:
        # CREATE INDEX refuses a table with deferred foreign-key checks still pending in the
        # transaction (a caller that also wrote records): run those checks now, then defer again.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"SELECT {UNIQUE_INDEX_FUNCTION}(%s::uuid)", [str(definition.pk)])
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


@transaction.atomic
def custom_field_create(
    *,
    entity: Entity,
    object_type: str,
    key: str,
    label: str,
    type: str,
    options: list | None = None,
    required: bool = False,
    unique: bool = False,
    description: str | None = "",
    sort_order: int | None = None,
) -> CustomField:
    """Define a field. Refuses (400) a malformed key, a built-in field's name, unknown types, options
    on a type without them (or none on select/multiselect), `unique` on types that cannot be unique;
    (409) a key already used for the object type, the 101st field of an object type. A unique field
    gets its unique index in the same transaction."""
    if object_type not in CustomFieldObjectType.values:
        raise errors.Invalid("objectType must be company, contact or lead.", field="object_type")
    if not isinstance(key, str) or not _KEY.match(key):
        raise errors.Invalid(
            f"key must match {KEY_PATTERN}: a lower-case letter, then up to 39 lower-case letters, digits or _.",
            field="key",
        )
    if key in built_in_names(object_type):
        raise errors.Invalid(f"{key} is a built-in field of {object_type}; choose another key.", field="key")
    if type not in CustomFieldType.values:
        raise errors.Invalid(f"type must be one of {', '.join(CustomFieldType.values)}.", field="type")
    if unique and type not in UNIQUE_TYPES:
        raise errors.Invalid("Only text, number, email and url fields can be unique.", field="unique")
    definition = CustomField(
        entity=entity,
        object_type=object_type,
        key=key,
        label=_label_normalise(label),
        type=type,
        options=_options_normalise(type, options),
        required=bool(required),
        unique=bool(unique),
        description=_description_normalise(description),
    )
    _lock_definitions(entity.pk, object_type)
    existing = CustomField.objects.for_entity(entity).filter(object_type=object_type)
    taken = existing.filter(key=key).values_list("pk", flat=True).first()
    if taken is not None:
        raise errors.Conflict(f"A {object_type} field with key {key} already exists.", existing_id=taken, field="key")
    count = existing.count()
    if count >= MAX_FIELDS_PER_TYPE:
        raise errors.Conflict(f"An entity has at most {MAX_FIELDS_PER_TYPE} custom fields per object type.")
    last = existing.aggregate(last=Max("sort_order"))["last"]
    definition.sort_order = 0 if last is None else last + 1
    try:
        with transaction.atomic():
            definition.save()
    except IntegrityError:  # a concurrent create of the same key (no advisory lock on SQLite)
        taken = existing.filter(key=key).values_list("pk", flat=True).first()
        raise errors.Conflict(f"A {object_type} field with key {key} already exists.", existing_id=taken) from None
    if definition.unique:
        _unique_index(definition)
    if sort_order is not None:
        _move(definition, sort_order)
    definitions_changed(definition.entity_id)
    return definition


def _move(definition: CustomField, position: int) -> None:
    """Put `definition` at 0-based `position` among its object type's fields; the others close up."""
    if isinstance(position, bool) or not isinstance(position, int) or position < 0:
        raise errors.Invalid("sortOrder must be an integer ≥ 0.", field="sort_order")
    siblings = list(
        CustomField.objects.for_entity(definition.entity_id)
        .filter(object_type=definition.object_type)
        .exclude(pk=definition.pk)
        .order_by("sort_order", "id")
    )
    siblings.insert(min(position, len(siblings)), definition)
    changed = []
    for index, row in enumerate(siblings):
        if row.sort_order != index or row.pk == definition.pk:
            row.sort_order = index
            changed.append(row)
    CustomField.objects.bulk_update(changed, ["sort_order"])


def custom_field_holders(definition: CustomField) -> int:
    """How many records hold a value for the field (what deleting it would hide)."""
    return records_holding(definition).count()


@transaction.atomic
def custom_field_update(*, definition: CustomField, **fields: Any) -> CustomField:
    """Change `label`, `description`, `required`, `options` (add, relabel; removing an option still
    held by a record → 409 with the count) or `sortOrder`. `key`, `type`, `objectType` and `unique`
    are immutable: sending another value is a 400. Making a field required leaves records as they are."""
    for name in IMMUTABLE:
        if name in fields and fields.pop(name) != getattr(definition, name):
            raise errors.Invalid(f"{name} cannot change once the field exists.", field=name)
    unknown = set(fields) - {"label", "description", "required", "options", "sort_order"}
    if unknown:
        raise errors.Invalid(f"Unknown fields: {', '.join(sorted(unknown))}.")
    _lock_definitions(definition.entity_id, definition.object_type)
    locked = CustomField.objects.select_for_update().filter(pk=definition.pk).first()
    if locked is None:
        raise errors.NotFound("Custom field not found.")
    definition.refresh_from_db()
    if "label" in fields:
        definition.label = _label_normalise(fields["label"])
    if "description" in fields:
        definition.description = _description_normalise(fields["description"])
    if "required" in fields:
        if not isinstance(fields["required"], bool):
            raise errors.Invalid("required must be true or false.", field="required")
        definition.required = fields["required"]
    if "options" in fields and (definition.type in OPTION_TYPES or fields["options"]):
        options = _options_normalise(definition.type, fields["options"])
        removed = [value for value in definition.option_values if value not in {o["value"] for o in options}]
        for value in removed:
            held = records_with_value(definition, value).count()
            if held:
                raise errors.Conflict(
                    f"Option {value} is still held by {held} record{'s' if held != 1 else ''}; "
                    "change those records first.",
                    field="options",
                )
        definition.options = options
    definition.save()
    if "sort_order" in fields:
        _move(definition, fields["sort_order"])
        definition.refresh_from_db(fields=["sort_order"])
    definitions_changed(definition.entity_id)
    return definition


@transaction.atomic
def custom_field_delete(*, definition: CustomField) -> None:
    """Delete a field. Its values vanish from every record at once (they are keyed by the field's id,
    which no later field reuses); its unique index goes in the same transaction, and a Celery task
    removes the orphaned values afterwards."""
    _lock_definitions(definition.entity_id, definition.object_type)
    CustomField.objects.filter(pk=definition.pk).delete()
    _unique_index(definition)
    remaining = list(
        CustomField.objects.for_entity(definition.entity_id)
        .filter(object_type=definition.object_type)
        .order_by("sort_order", "id")
    )
    for index, row in enumerate(remaining):
        row.sort_order = index
    CustomField.objects.bulk_update([row for row in remaining], ["sort_order"])
    definitions_changed(definition.entity_id)
    args = (str(definition.entity_id), definition.object_type, definition.storage_key)
    transaction.on_commit(lambda: _purge_enqueue(*args), robust=True)


def _purge_enqueue(entity_id: str, object_type: str, storage_key: str) -> None:
    """Queue the clean-up; a broker that is down only delays reclaiming space (values stay hidden)."""
    from crm.tasks import purge_custom_field_values  # crm.tasks imports the services

    try:
        purge_custom_field_values.apply_async((entity_id, object_type, storage_key))
    except Exception as exc:  # the values are invisible already; nothing is lost
        logger.warning("Could not queue the clean-up of custom field %s (%s)", storage_key, type(exc).__name__)


PURGE_BATCH = 2000


def custom_field_values_purge(*, entity_id, object_type: str, storage_key: str, batch: int = PURGE_BATCH) -> int:
    """Remove a deleted field's stored values from the entity's records, a batch per transaction
    (space only: the values are already invisible). Leaves `updatedAt` alone. Returns rows cleaned."""
    if not re.fullmatch(r"f[0-9a-f]{32}", storage_key):
        raise ValueError("not a storage key")
    if CustomField.objects.filter(pk=uuid.UUID(storage_key[1:])).exists():
        return 0  # still defined (never the case for a deleted field's id)
    model = OBJECT_MODELS[object_type]
    table = connection.ops.quote_name(model._meta.db_table)
    cleaned = 0
    while True:
        with transaction.atomic():
            if is_postgres(connection):
                sql = (
                    f"UPDATE {table} SET custom_fields = custom_fields - %s WHERE id IN "
                    f"(SELECT id FROM {table} WHERE entity_id = %s AND custom_fields ? %s LIMIT %s)"
                )
                params = [storage_key, str(entity_id), storage_key, batch]
            else:
                path = f'$."{storage_key}"'
                sql = (
                    f"UPDATE {table} SET custom_fields = json_remove(custom_fields, %s) WHERE id IN "
                    f"(SELECT id FROM {table} WHERE entity_id = %s AND json_type(custom_fields, %s) IS NOT NULL "
                    "LIMIT %s)"
                )
                params = [path, uuid.UUID(str(entity_id)).hex, path, batch]
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                count = cursor.rowcount
        cleaned += count
        if count < batch:
            return cleaned


__all__ = [
    "ValueChanges",
    "custom_field_create",
    "custom_field_delete",
    "custom_field_filter_value",
    "custom_field_holders",
    "custom_field_update",
    "custom_field_value_normalise",
    "custom_field_values_purge",
    "custom_fields_apply",
    "custom_fields_changed",
    "custom_fields_changes",
    "custom_fields_conflict",
    "custom_fields_represent",
    "custom_fields_save",
    "custom_fields_take",
    "equals_q",
]
