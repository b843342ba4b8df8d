"""`GET /{resource}/export` (streamed CSV) and `POST /{resource}/batch` (up to 100 writes), added
to the companies, contacts, leads and activities viewsets by one mixin.

Export takes the list's own filter set and order (`filter_queryset`, `ordering`), so it exports
exactly what the list shows, and streams from a server-side cursor in its own read transaction:
memory stays flat whatever the size. Each row is the list's representation (the same serializer,
in chunks), one column per field as the API names it.

Batch validates and writes through the bulk engine (`crm.bulk.engine`): each item gets the status
and body its single request would get, at a few statements per chunk instead of per item.
"""

from __future__ import annotations

import csv
import io
import json
from itertools import islice

from django.db import transaction
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from axiomatic.api.schema import ErrorSerializer
from axiomatic.api.serializers import ApiSerializer
from axiomatic.tenancy.database import enter_entity
from crm.api.imports import CsvRenderer
from crm.services.actors import Actor

# The engine imports the resources' serializers, whose viewsets import this mixin: it is loaded
# when a batch runs (`_engine`), and the operation names are repeated here.
CREATE, UPDATE, UPSERT, DELETE = "create", "update", "upsert", "delete"
OPERATIONS = (CREATE, UPDATE, UPSERT, DELETE)

MAX_BATCH_ITEMS = 100
EXPORT_CHUNK = 2000
MATCH_ON = {"company": ("domain", "id"), "contact": ("email", "id"), "lead": ("id",), "activity": ("id",)}


def cell(value) -> str:
    """A JSON value as a CSV cell: null empty, booleans as JSON, a stage object by its name."""
    if value.__class__ is str:  # most cells: first, and without an isinstance chain (a million rows)
        return value
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, dict):
        return str(value["name"]) if "name" in value else json.dumps(value)
    if isinstance(value, list):
        return json.dumps(value)
    return str(value)


def _column_plan(columns: list[str]) -> list[tuple[bool, str]]:
    """(is a custom field, key) per column, worked out once per export rather than per cell."""
    return [
        (True, column.split(".", 1)[1]) if column.startswith("customFields.") else (False, column) for column in columns
    ]


def export_rows(view, queryset, columns: list[str]):
    """CSV text, a chunk of rows at a time, read in the entity through a server-side cursor."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    plan = _column_plan(columns)
    yield buffer.getvalue()
    with transaction.atomic():
        enter_entity(view.request.entity.pk)
        rows = queryset.iterator(chunk_size=EXPORT_CHUNK)
        while True:
            chunk = list(islice(rows, EXPORT_CHUNK))
            if not chunk:
                break
            buffer.seek(0)
            buffer.truncate()
            # `to_representation`, not `.data`: `.data` keeps the serializer and the rows in a
            # reference cycle that only the garbage collector frees, so chunks would pile up.
            items = view.get_serializer(many=True).to_representation(chunk)
            del chunk  # one chunk in memory at a time: released before the next is fetched
            for item in items:
                custom = item.get("customFields") or {}
                writer.writerow([cell(custom.get(key) if is_custom else item.get(key)) for is_custom, key in plan])
            del items
            yield buffer.getvalue()


@extend_schema_field({"type": "object"})
class BatchItemField(serializers.JSONField):
    """An item: an object (a body as POST or PATCH take it). Anything else is refused per item (400
    in its result), so one malformed item does not refuse the batch."""


class BatchSerializer(ApiSerializer):
    """A batch of writes of one kind."""

    operation = serializers.ChoiceField(choices=[(name, name) for name in OPERATIONS])
    items = serializers.ListField(
        child=BatchItemField(),
        min_length=1,
        max_length=MAX_BATCH_ITEMS,
        help_text="1–100 bodies as POST (create) or PATCH (update, with id) take them; delete items are {id}.",
    )
    match_on = serializers.ChoiceField(
        choices=[("id", "id"), ("domain", "domain"), ("email", "email")],
        required=False,
        help_text="upsert: domain (companies, the default), email (contacts, the default) or id.",
    )
    all_or_none = serializers.BooleanField(required=False, default=False)

    class Meta:
        ref_name = "BatchRequest"


class BatchResultSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    status = serializers.IntegerField(help_text="What the single request would have answered: 200, 201, 204, 4xx.")
    error = serializers.CharField(required=False)
    details = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False)
    existingId = serializers.UUIDField(required=False)
    rolledBack = serializers.BooleanField(required=False, help_text="allOrNone: this item was undone.")

    class Meta:
        ref_name = "BatchResult"


class BatchResponseSerializer(serializers.Serializer):
    results = BatchResultSerializer(many=True, help_text="Per item, in order; successes carry the resource.")
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()

    class Meta:
        ref_name = "BatchResponse"


class BatchRolledBackSerializer(ErrorSerializer):
    """The 400 of a batch: the error envelope of a refused request, with the per-item results when
    `allOrNone` rolled every item back."""

    results = BatchResultSerializer(
        many=True, required=False, help_text="allOrNone: per item, in order; each failed item's error given."
    )
    succeeded = serializers.IntegerField(required=False)
    failed = serializers.IntegerField(required=False)

    class Meta:
        ref_name = "BatchRolledBack"


class BulkMixin:
    # `export` and `batch` for the viewsets whose item key the engine knows. (No docstring: the
    # schema generator would take it as the description of the viewset's other operations.)

    @property
    def bulk_object_type(self) -> str:
        return self.item_key  # company, contact, lead, activity: the engine's names

    @extend_schema(
        summary="Export as CSV",
        description="The list's filters and order, streamed as text/csv (UTF-8, attachment): one column per field "
        "as the API names it, money and dates as in JSON. Memory stays flat whatever the size; an export imported "
        "with matchOn=id changes nothing.",
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="The CSV file.")},
        parameters=[OpenApiParameter("format", exclude=True)],  # always CSV: no format to choose
    )
    @action(detail=False, methods=["get"], url_path="export", renderer_classes=[JSONRenderer, CsvRenderer])
    def export(self, request, *args, **kwargs):
        queryset = self.filter_queryset(self.get_queryset())  # bad filters → 400 before streaming starts
        columns = list(self.get_serializer().fields)
        if "customFields" in columns:  # one column per custom field: `customFields.<key>`
            from crm.selectors.custom_fields import definitions_for

            keys = [d.key for d in definitions_for(entity=request.entity, object_type=self.item_key)]
            at = columns.index("customFields")
            columns[at : at + 1] = [f"customFields.{key}" for key in keys]
        response = StreamingHttpResponse(export_rows(self, queryset, columns), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{self.list_key}.csv"'
        return response

    @extend_schema(
        summary="Batch write",
        description="create, update, upsert or delete 1–100 items; each result carries the status and body its "
        "single request would have got. With allOrNone any failure rolls every item back (400). Idempotency-Key "
        "works as for every POST.",
        request=BatchSerializer,
        responses={200: BatchResponseSerializer, 400: BatchRolledBackSerializer},
        filters=False,
    )
    @action(detail=False, methods=["post"], url_path="batch", filter_backends=[])
    def batch(self, request, *args, **kwargs):
        body = BatchSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        from crm.bulk.engine import BulkRequest, BulkWriter, Item, Options, _Rollback

        operation = data["operation"]
        allowed = MATCH_ON[self.bulk_object_type]
        match_on = data.get("match_on") or allowed[0]
        if operation == UPSERT and match_on not in allowed:
            raise serializers.ValidationError({"matchOn": [f"Must be one of {', '.join(allowed)} here."]})
        writer = BulkWriter(
            object_type=self.bulk_object_type,
            request=BulkRequest(entity=request.entity, user=request.user, auth=request.auth),
            actor=Actor.from_request(request),
            options=Options(operation=operation, match_on=match_on if operation == UPSERT else "id"),
        )
        items, refused = [], []
        for index, value in enumerate(data["items"]):
            item = Item(index=index, body=value if isinstance(value, dict) else {})
            problem = self._item_problem(value, operation)
            if problem:
                item.fail(400, problem)
                refused.append(item)
            else:
                items.append(item)
        if data["all_or_none"]:
            try:
                with transaction.atomic():
                    writer.write(items)
                    if refused or any(item.outcome == "failed" for item in items):
                        raise _Rollback
            except _Rollback:
                for item in items:
                    if item.outcome != "failed":
                        item.extra["rolled_back"] = True
        else:
            writer.write(items)
        results = sorted([*items, *refused], key=lambda item: item.index)
        failed = sum(1 for item in results if item.outcome == "failed")
        rolled_back = any(item.extra.get("rolled_back") for item in results)
        payload = {
            **(
                {"error": f"{failed} of {len(results)} items failed; every item was rolled back."}
                if rolled_back
                else {}
            ),
            "results": [self._result(item) for item in results],
            "succeeded": 0 if rolled_back else len(results) - failed,
            "failed": failed,
        }
        return Response(payload, status=status.HTTP_400_BAD_REQUEST if rolled_back else status.HTTP_200_OK)

    def _item_problem(self, value, operation: str) -> dict | None:
        if not isinstance(value, dict):
            return {"error": "Each item must be a JSON object."}
        given = value.get("entityId")
        if given is not None and str(given).strip().lower() != str(self.request.entity.pk):
            return {"error": "entityId in an item must be the request's entity."}
        if operation == DELETE and set(value) - {"id", "entityId"}:
            unknown = sorted(set(value) - {"id", "entityId"})
            return {
                "error": "Invalid input. " + " ".join(f"{name}: Unknown field." for name in unknown),
                "details": {name: ["Unknown field."] for name in unknown},
            }
        if operation in (UPDATE, DELETE) and not isinstance(value.get("id"), str):
            return {
                "error": "Invalid input. id: This field is required.",
                "details": {"id": ["This field is required."]},
            }
        return None

    def _result(self, item) -> dict:
        result = {"index": item.index, "status": item.status}
        if item.response:
            result.update(item.response)
        if item.extra.get("rolled_back"):
            result["rolledBack"] = True
        return result
