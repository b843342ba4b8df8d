r"""OpenAPI conventions that make the schema fit to generate clients from.

Used by `axiomatic.api.schema.ApiAutoSchema` (per operation) and registered as a drf-spectacular
postprocessing hook (whole document, `SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]`):

- **operationIds** say what the call does, verb first, lowerCamelCase: `listCompanies`,
  `createContact`, `moveLeadStage`. The verb comes from the viewset action (`list`, `create`,
  `get` for retrieve, `update` for partial_update, `delete` for destroy; a custom action's first
  word, e.g. `move_stage` → `move` … `Stage`), the noun from the view: `operation_noun` /
  `operation_noun_plural` when the view declares them, else the parent resource's model name
  (nested routes) followed by `item_key` / `list_key`. List routes and actions with
  `detail=False` take the plural. `extend_schema(operation_id=...)` wins where the rule does not fit.
- **tags** group operations by resource: the first path segment after `/api/<app>/`
  (`/api/crm/leads/{leadId}/timeline` → `leads`); other apps than the CRM prefix their name
  (`/api/marketing/lists` → `marketing-lists`).
- **request bodies** are closed (`additionalProperties: false`, as the serializers refuse unknown
  fields) and declare `entityId`, which every body may carry.
- **links** go from each create operation to the operations that take the new id: the path
  parameter naming an item of the collection created in (`{leadId}` of `/leads/{leadId}`; other
  path parameters come from the request), or a required request-body property of that name
  (`leadId` of `sendOutboundEmail`).
- 429 and 503 answers declare `Retry-After`.
- **fields** state what validation enforces: text that is trimmed and may not be blank has
  `pattern: \S`; money is a decimal string (`MONEY_PATTERN`) or a number with two decimals;
  timestamps sent have a four-digit year from 1000; a serializer's `Meta.openapi_request` (and
  `Meta.openapi_create`, for its non-PATCH request body only) adds rules across fields (`oneOf`,
  `anyOf`, `not`), as `{"oneOf": [{"required": ["stageId"]}, {"required": ["stage"]}]}`, written
  into the document as one `not` (see `serializer_constraints`).

Nothing here names an app: the rules read the views' attributes and the document's paths.
"""

from __future__ import annotations

import re
from typing import Any

import jsonschema
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from rest_framework import serializers

from axiomatic.api.serializers import MONEY_PATTERN, ApiDateTimeField, MoneyField
from axiomatic.mounts import api_mount
from axiomatic.tenancy.resolve import ENTITY_PARAM
from axiomatic.timestamps import MIN_YEAR

_CRUD_VERBS = {
    "list": "list",
    "create": "create",
    "retrieve": "get",
    "update": "replace",
    "partial_update": "update",
    "destroy": "delete",
}
_PLURAL_ACTIONS = {"list"}
_HTTP_METHODS = ("get", "put", "post", "patch", "delete")
_PATH_PARAM = re.compile(r"{(\w+)}")

ENTITY_BODY_PROPERTY = {
    "type": "string",
    "format": "uuid",
    "description": "The entity, as an alternative to the `entityId` query parameter (they must agree when both are "
    "sent). Always accepted, whatever the operation.",
}
RETRY_AFTER_HEADER = {
    "description": "Seconds to wait before retrying.",
    "schema": {"type": "integer", "minimum": 1},
}


def _upper_first(word: str) -> str:
    return word[:1].upper() + word[1:]


def _camel(snake: str) -> str:
    return "".join(_upper_first(part) for part in re.split(r"[_\-\s]+", snake) if part)


def pluralize(noun: str) -> str:
    """English plural of a CamelCase noun's last word (`Company` → `Companies`, `Stage` → `Stages`)."""
    if re.search(r"[^aeiou]y$", noun):
        return noun[:-1] + "ies"
    if re.search(r"(s|x|z|ch|sh)$", noun):
        return noun + "es"
    return noun + "s"


def operation_nouns(view) -> tuple[str, str]:
    """(singular, plural) noun of a view's operations, e.g. ("CompanyContact", "CompanyContacts")."""
    singular = getattr(view, "operation_noun", None)
    plural = getattr(view, "operation_noun_plural", None)
    if singular:
        return singular, plural or pluralize(singular)
    parent_resource = getattr(view, "parent_resource", None)
    prefix = parent_resource.model.__name__ if parent_resource is not None else ""
    item_key = getattr(view, "item_key", None)
    if not item_key or item_key == "item":  # the base class's placeholder: fall back to the model
        queryset = getattr(view, "queryset", None)
        item_key = queryset.model.__name__ if queryset is not None else type(view).__name__.removesuffix("ViewSet")
        return prefix + item_key, plural or prefix + pluralize(item_key)
    singular = prefix + _upper_first(item_key)
    list_key = getattr(view, "list_key", None)
    return singular, plural or (prefix + _upper_first(list_key) if list_key else pluralize(singular))


def _is_detail(view, action: str, path: str) -> bool:
    declared = getattr(getattr(view, action, None), "detail", None)
    if declared is not None:
        return bool(declared)
    lookup = getattr(view, "lookup_url_kwarg", None) or getattr(view, "lookup_field", None)
    return bool(lookup) and f"{{{lookup}}}" in path


def operation_id(view, path: str) -> str | None:
    """`listCompanies`, `getLead`, `moveLeadStage`, …; None for views without a viewset action."""
    action = getattr(view, "action", None)
    if not action:
        return None
    singular, plural = operation_nouns(view)
    if action in _CRUD_VERBS:
        noun = plural if action in _PLURAL_ACTIONS else singular
        return _CRUD_VERBS[action] + noun
    verb, *rest = action.split("_")
    noun = singular if _is_detail(view, action, path) else plural
    return verb.lower() + noun + _camel("_".join(rest))


def operation_tag(path: str) -> str | None:
    """`/api/crm/leads/{leadId}/timeline` → `leads`; `/api/marketing/lists` → `marketing-lists`."""
    parts = [part for part in path.strip("/").split("/") if part]
    if len(parts) < 3 or parts[0] != "api" or parts[2].startswith("{"):
        return None
    resource = parts[2]
    mount = api_mount(path)
    prefix = mount.tag_prefix if mount is not None else f"{parts[1]}-"
    return resource if resource.startswith(prefix.rstrip("-")) else f"{prefix}{resource}"


# --- fields -------------------------------------------------------------------------------------

NON_BLANK_PATTERN = r"\S"
MONEY_MAXIMUM = 999_999_999_999.99
# What every timestamp of the API looks like on the way out (`axiomatic.timestamps.iso_utc`).
TIMESTAMP_OUT_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$"
assert MIN_YEAR == 1000, "TIMESTAMP_IN_PATTERN assumes four-digit years from 1000"
TIMESTAMP_IN_PATTERN = r"^[1-9][0-9]{3}-"


class MoneyFieldExtension(OpenApiSerializerFieldExtension):
    target_class = MoneyField
    match_subclasses = True

    def map_serializer_field(self, auto_schema, direction):
        if direction == "response":
            return {"type": "string", "format": "decimal", "pattern": r"^[0-9]{1,12}\.[0-9]{2}$", "example": "1250.00"}
        return {
            "oneOf": [
                {"type": "string", "format": "decimal", "pattern": MONEY_PATTERN, "example": "1250.00"},
                {"type": "number", "minimum": 0, "maximum": MONEY_MAXIMUM, "multipleOf": 0.01},
            ]
        }


class ApiDateTimeFieldExtension(OpenApiSerializerFieldExtension):
    target_class = ApiDateTimeField
    match_subclasses = True

    def map_serializer_field(self, auto_schema, direction):
        if direction == "response":
            return {"type": "string", "format": "date-time", "pattern": TIMESTAMP_OUT_PATTERN}
        return {"type": "string", "format": "date-time", "pattern": TIMESTAMP_IN_PATTERN}


def openapi_field(field, *, request: dict | None = None, response: dict | None = None):
    """`field`, with the schema it has in request bodies and/or responses stated outright (the
    field's own meta — nullable, description, readOnly — and validators are added to it)."""
    # On a subclass, not the instance: serializers deep-copy their fields by re-instantiating the class.
    cls = type(field)
    field.__class__ = type(cls.__name__, (cls,), {"_openapi_schemas": {"request": request, "response": response}})
    return field


def declared_field_schema(field, direction: str) -> dict | None:
    schema = (getattr(field, "_openapi_schemas", None) or {}).get(direction)
    return dict(schema) if schema is not None else None


def refine_field_schema(field, schema: dict, direction: str) -> None:
    """Rules DRF fields enforce that drf-spectacular leaves out (after its own validators)."""
    if direction != "request" or not isinstance(field, serializers.CharField) or "oneOf" in schema:
        return
    if schema.get("type") != "string" or "enum" in schema or "format" in schema or "pattern" in schema:
        return
    if field.trim_whitespace and not field.allow_blank:
        schema["pattern"] = NON_BLANK_PATTERN  # "   " is trimmed to "" and refused as blank


def serializer_constraints(serializer, *, patch: bool) -> dict:
    """Cross-field rules a serializer declares for its request body (see the module docstring), as
    one `not`: `{"oneOf": X}` becomes `{"not": {"not": {"oneOf": X}}}`, several rules
    `{"not": {"anyOf": [<each negated>]}}`. The same rules for every validator; but client
    generators read a body with a top-level oneOf/anyOf as a union of several models (or as no
    model at all), while they leave `not` to validation and keep one model with every property."""
    meta = getattr(serializer, "Meta", None)
    rules = dict(getattr(meta, "openapi_request", None) or {})
    if not patch:
        rules.update(getattr(meta, "openapi_create", None) or {})
    negated = [rules.pop("not")] if "not" in rules else []
    negated += [{"not": {keyword: value}} for keyword, value in rules.items()]
    if not negated:
        return {}
    return {"not": negated[0] if len(negated) == 1 else {"anyOf": negated}}


# --- postprocessing hook ----------------------------------------------------------------------


def _operations(schema: dict):
    for path, item in schema.get("paths", {}).items():
        for method in _HTTP_METHODS:
            if method in item:
                yield path, method, item[method]


def _component_name(node: dict | None) -> str | None:
    ref = (node or {}).get("$ref", "")
    return ref.removeprefix("#/components/schemas/") if ref.startswith("#/components/schemas/") else None


def _json_schema(container: dict | None) -> dict | None:
    return ((container or {}).get("content") or {}).get("application/json", {}).get("schema")


def _close_request_bodies(schema: dict) -> None:
    components = schema.get("components", {}).get("schemas", {})
    for _path, _method, operation in _operations(schema):
        # JSON bodies, and the multipart form of a file upload (refused alike on unknown fields)
        contents = ((operation.get("requestBody") or {}).get("content") or {}).values()
        names = [_component_name(content.get("schema")) for content in contents]
        bodies = [components.get(name) for name in names if name]
        if not bodies or bodies[0] is None or bodies[0].get("type") != "object":
            continue
        body = bodies[0]
        body["additionalProperties"] = False
        body.setdefault("properties", {}).setdefault(ENTITY_PARAM, dict(ENTITY_BODY_PROPERTY))
        if not _accepts_empty_object(body):
            operation["requestBody"]["required"] = True  # a missing body reads as `{}`, which is refused


def _accepts_empty_object(body: dict) -> bool:
    """Whether `{}` is valid against a body schema: a PATCH whose fields are all optional may be
    sent without a body (a no-op), a body with required fields or an at-least-one rule may not.
    `{}` has no properties, so the property schemas (and their references) play no part."""
    rules = {key: value for key, value in body.items() if key not in ("properties", "additionalProperties")}
    return jsonschema.Draft4Validator(rules).is_valid({})


def _created_item(schema: dict, operation: dict) -> tuple[str, str, str] | None:
    """(status, item key, id expression) when the operation answers a created item `{key: {id, ...}}`."""
    components = schema.get("components", {}).get("schemas", {})
    for status in ("201", "202"):
        envelope = components.get(_component_name(_json_schema(operation["responses"].get(status))) or "")
        properties = (envelope or {}).get("properties") or {}
        if len(properties) != 1:
            continue
        ((key, item_ref),) = properties.items()
        item = components.get(_component_name(item_ref) or "") or {}
        if "id" in (item.get("properties") or {}):
            return status, key, f"$response.body#/{key}/id"
    return None


def _required_body_properties(schema: dict, operation: dict) -> set[str]:
    components = schema.get("components", {}).get("schemas", {})
    name = _component_name(_json_schema(operation.get("requestBody")))
    return set((components.get(name) or {}).get("required", ())) if name else set()


def _item_parameter(schema: dict, collection_path: str) -> str | None:
    """The path parameter naming one item of a collection: `/leads` → `leadId` (`/leads/{leadId}`)."""
    for path in schema.get("paths", {}):
        match = re.fullmatch(re.escape(collection_path) + r"/{(\w+)}(?:/.*)?", path)
        if match:
            return match.group(1)
    return None


def _add_links(schema: dict) -> None:
    operations = list(_operations(schema))
    for source_path, method, source in operations:
        if method != "post" or "operationId" not in source:
            continue
        created = _created_item(schema, source)
        if created is None:
            continue
        status, key, id_expression = created
        id_name = _item_parameter(schema, source_path) or f"{key}Id"
        known = set(_PATH_PARAM.findall(source_path))
        links = {}
        for target_path, _target_method, target in operations:
            target_id = target.get("operationId")
            if target is source or not target_id:
                continue
            params = _PATH_PARAM.findall(target_path)
            if any(param != id_name and param not in known for param in params):
                continue  # the target needs an id this call neither sent nor answered
            link: dict[str, Any] = {}
            if id_name in params:
                link["parameters"] = {
                    param: id_expression if param == id_name else f"$request.path.{param}" for param in params
                }
                link["description"] = f"The `{id_name}` of `{target_id}` is the `id` this call answered."
            elif id_name in _required_body_properties(schema, target):
                if params:
                    link["parameters"] = {param: f"$request.path.{param}" for param in params}
                link["requestBody"] = {id_name: id_expression}
                link["description"] = f"`{id_name}` in the body of `{target_id}` is the `id` this call answered."
            else:
                continue
            links[target_id] = {"operationId": target_id, **link}
        if links:
            source["responses"][status]["links"] = dict(sorted(links.items()))


def _retry_after_headers(schema: dict) -> None:
    for _path, _method, operation in _operations(schema):
        for status in ("429", "503"):
            response = operation.get("responses", {}).get(status)
            if response is not None:
                response.setdefault("headers", {})["Retry-After"] = dict(RETRY_AFTER_HEADER)


def _declare_tags(schema: dict) -> None:
    used = {tag for _path, _method, operation in _operations(schema) for tag in operation.get("tags", ())}
    declared = {tag["name"]: tag for tag in schema.get("tags", ())}
    schema["tags"] = [declared.get(name, {"name": name}) for name in sorted(used | set(declared))]


def postprocess_schema(result: dict, generator, request, public) -> dict:
    """drf-spectacular postprocessing hook: closed request bodies, links, Retry-After, tags."""
    _close_request_bodies(result)
    _add_links(result)
    _retry_after_headers(result)
    _declare_tags(result)
    return result
