"""OpenAPI generation: the contract's conventions applied to every operation in one place.

- every entity-scoped operation gets the `entityId` query parameter;
- single-resource responses are wrapped in their item key (`{"company": {...}}`);
- list responses carry the list key beside the pagination fields;
- the error envelope is documented once and attached to every operation's 4xx (and 503) answers;
- operationIds and tags follow one rule (`axiomatic.api.openapi`): `listCompanies`, `moveLeadStage`.
"""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import append_meta, is_patched_serializer
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, inline_serializer
from rest_framework import serializers

from axiomatic.api import openapi  # registers the field extensions (money, timestamps)
from axiomatic.api.entity import ENTITY_PARAM
from axiomatic.mounts import takes_idempotency_key


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="One human-readable sentence.")
    details = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Validation messages per field, when the error is about specific fields.",
    )
    existingId = serializers.UUIDField(
        required=False, help_text="On 409 uniqueness conflicts: the record that already exists."
    )
    mergedInto = serializers.UUIDField(
        required=False, help_text="On 404 for a record that was merged: the record it was merged into."
    )

    class Meta:
        ref_name = "Error"


class OkSerializer(serializers.Serializer):
    ok = serializers.BooleanField()

    class Meta:
        ref_name = "Ok"


ENTITY_PARAMETER = OpenApiParameter(
    ENTITY_PARAM,
    OpenApiTypes.UUID,
    OpenApiParameter.QUERY,
    required=True,
    description="Entity UUID; must match the API key's entity when using Bearer auth. "
    "May instead be sent in the JSON body, or as the `x-entity-id` header by browser sessions; "
    "if sent in several places the values must agree (else 400).",
)

IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
    OpenApiParameter.HEADER,
    required=False,
    description="1–255 printable characters. Repeating a POST with the same key and body within 24 hours answers "
    "the first (successful) response again, with `Idempotent-Replayed: true`, and creates or sends nothing new; "
    "the same key with a different body → 422; while the first request is still running → 409.",
)

_ERROR_CODES = {
    "400": "Invalid input (the envelope's `details` names the fields).",
    "401": "Missing, malformed, unknown, expired or revoked API key.",
    "403": "The key lacks the scope, or belongs to another entity.",
    "404": "Not found in this entity (another entity's id reads the same).",
    "409": "Conflict: a uniqueness rule (the envelope's `existingId` names the existing record), "
    "the current state refuses the write, or a request with the same `Idempotency-Key` is in flight.",
    "413": "Request body larger than 1 MB.",
    "415": "Body is not `application/json`.",
    "422": "`Idempotency-Key` reused with a different request.",
    "429": "Rate limit exceeded; see `Retry-After`.",
    "503": "The service cannot serve right now (database unavailable); retry after `Retry-After` seconds.",
}
_WRAPPED_ACTIONS = {"retrieve", "create", "partial_update"}
_wrappers: dict[str, type] = {}


def item_envelope(item_key: str, serializer_class) -> serializers.Serializer:
    name = serializer_class.__name__.removesuffix("Serializer") + "Envelope"
    if name not in _wrappers:
        _wrappers[name] = inline_serializer(name=name, fields={item_key: serializer_class()})
    return _wrappers[name]


class ApiAutoSchema(AutoSchema):
    _direction = "response"

    def get_operation_id(self) -> str:
        return openapi.operation_id(self.view, self.path) or super().get_operation_id()

    def get_tags(self) -> list[str]:
        tag = openapi.operation_tag(self.path)
        return [tag] if tag else super().get_tags()

    def _map_basic_serializer(self, serializer, direction):
        outer, self._direction = self._direction, direction
        try:
            schema = super()._map_basic_serializer(serializer, direction)
        finally:
            self._direction = outer
        if direction == "request":
            patch = is_patched_serializer(serializer, direction)
            schema.update(openapi.serializer_constraints(serializer, patch=patch))
        return schema

    def _get_request_for_media_type(self, serializer, direction="request"):
        if self.method == "PATCH" and getattr(self.view, "action", None) != "partial_update":
            # A PATCH action that validates its whole body (moveLeadStage) is no partial update:
            # its body is not a "Patched..." component.
            self.method = "POST"
            try:
                return super()._get_request_for_media_type(serializer, direction)
            finally:
                self.method = "PATCH"
        return super()._get_request_for_media_type(serializer, direction)

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        declared = openapi.declared_field_schema(field, direction)
        if declared is not None:
            return append_meta(declared, self._get_serializer_field_meta(field, direction))
        return super()._map_serializer_field(field, direction, bypass_extensions)

    def _insert_field_validators(self, field, schema):
        super()._insert_field_validators(field, schema)
        openapi.refine_field_schema(field, schema, self._direction)

    def _scoped(self) -> bool:
        from axiomatic.api.viewsets import EntityScopedViewSet

        return isinstance(self.view, EntityScopedViewSet)

    def get_override_parameters(self):
        params = super().get_override_parameters()
        if self._scoped():
            params = [ENTITY_PARAMETER, *params]
        if self.method == "POST" and takes_idempotency_key(self.path):
            params = [*params, IDEMPOTENCY_KEY_PARAMETER]
        # Query parameters a FilterSet reads beyond its declared filters (e.g. `cf[<key>]`).
        filterset_class = getattr(self.view, "filterset_class", None)
        if self.method == "GET" and getattr(self.view, "action", None) == "list" and filterset_class is not None:
            params = [*params, *getattr(filterset_class, "openapi_parameters", ())]
        return params

    def _is_list_view(self, serializer=None) -> bool:
        # A list without paging answers one object (`{"stages": [...]}`, the dashboard, the change
        # feed), never a bare array.
        if self._scoped() and getattr(self.view, "pagination_class", None) is None:
            return False
        return super()._is_list_view(serializer)

    def _get_paginator(self):
        paginator = super()._get_paginator()
        if paginator is not None:
            paginator.list_key = getattr(self.view, "list_key", "results")
        return paginator

    def get_response_serializers(self):
        from axiomatic.api.viewsets import DestroyOkMixin

        action = getattr(self.view, "action", None)
        if self._scoped() and action in _WRAPPED_ACTIONS:
            return item_envelope(self.view.item_key, self.view.get_serializer_class())
        if action == "destroy" and isinstance(self.view, DestroyOkMixin):
            return {200: OkSerializer}
        return super().get_response_serializers()

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        codes = ["401", "403", "429"] if self._scoped() else []
        if self.method in ("POST", "PATCH", "PUT", "DELETE") or self._scoped():
            codes.insert(0, "400")
        if "{" in self.path:
            codes.append("404")
        if self._scoped() and self.method in ("POST", "PATCH"):
            codes += ["409", "413", "415"]
        elif self._scoped() and self.method == "DELETE":
            codes += ["413", "415"]  # the body (even of a DELETE) is read for `entityId`
        if self._scoped() and self.method == "POST" and takes_idempotency_key(self.path):
            codes.append("422")
        if self._scoped():
            codes.append("503")
        for code in codes:
            if code not in responses:
                responses[code] = self._get_response_for_code(ErrorSerializer, code)
                responses[code]["description"] = _ERROR_CODES[code]
        return responses
