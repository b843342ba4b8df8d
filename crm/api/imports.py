"""`/api/crm/imports`: upload a CSV (multipart), follow its progress, read its errors, cancel it.

The view only reads the form and answers; `crm.services.imports` checks and stores the file and
queues the job, `crm.bulk.importer` applies it in a Celery worker.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, serializers, status
from rest_framework.decorators import action
from rest_framework.parsers import MultiPartParser
from rest_framework.renderers import BaseRenderer, JSONRenderer

from axiomatic import changes
from axiomatic.api.parsers import PayloadTooLarge
from axiomatic.api.schema import item_envelope
from axiomatic.api.serializers import ApiModelSerializer, ApiSerializer
from axiomatic.api.viewsets import EntityScopedViewSet, ListMixin, ParentResource, RetrieveMixin
from axiomatic.rls import entity_scope
from crm.models import Import, ImportRowError
from crm.services.imports import (
    OBJECT_TYPES,
    ImportRequest,
    ImportTooLarge,
    import_cancel,
    import_create,
    import_errors_csv,
)


class CsvRenderer(BaseRenderer):
    """`text/csv` for the routes that stream CSV; an error envelope is still JSON text."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if renderer_context and renderer_context.get("response") is not None:
            renderer_context["response"]["Content-Type"] = "application/json"
        return json.dumps(data).encode() if data is not None else b""


class ImportSerializer(ApiModelSerializer):
    """A CSV import and its progress."""

    created_by_user_id = serializers.UUIDField(source="created_by_id", read_only=True, allow_null=True)
    object_type = serializers.ChoiceField(choices=[(name, name.capitalize()) for name in OBJECT_TYPES], read_only=True)
    status = serializers.ChoiceField(choices=Import.Status.choices, read_only=True)

    class Meta:
        model = Import
        fields = [
            "id",
            "object_type",
            "file_name",
            "status",
            "dry_run",
            "total_rows",
            "processed_rows",
            "created",
            "updated",
            "unchanged",
            "skipped",
            "failed",
            "created_by_user_id",
            "created_at",
            "started_at",
            "finished_at",
            "error",
        ]
        read_only_fields = fields


class ImportCreateSerializer(serializers.Serializer):
    """The multipart form of `POST /imports` (for the schema; the view reads the form itself)."""

    file = serializers.FileField(help_text="CSV, UTF-8 (BOM allowed), comma-separated, header row first. ≤ 50 MB.")
    objectType = serializers.ChoiceField(choices=[(name, name.capitalize()) for name in OBJECT_TYPES])
    mapping = serializers.CharField(
        required=False,
        help_text='JSON object {"<CSV header>": "<field>" | null}; other headers are matched by field name or '
        "label, case- and space-insensitively.",
    )
    matchOn = serializers.ChoiceField(
        choices=[("id", "id"), ("domain", "domain"), ("email", "email"), ("none", "none")],
        required=False,
        help_text="Default domain (companies), email (contacts), none (leads).",
    )
    onMatch = serializers.ChoiceField(choices=[("update", "update"), ("skip", "skip")], required=False)
    dryRun = serializers.BooleanField(required=False, help_text="Validate and count; write nothing.")
    clearEmpty = serializers.BooleanField(required=False, help_text="An empty cell clears the field on update.")
    createCompanies = serializers.BooleanField(
        required=False, help_text="Contacts: create the company a companyDomain/companyName names when missing."
    )

    class Meta:
        ref_name = "ImportCreate"


class ImportErrorSerializer(ApiSerializer):
    """One problem of one data row."""

    row = serializers.IntegerField(read_only=True, help_text="The data row's 1-based number.")
    column = serializers.CharField(read_only=True, help_text="The CSV header of the column, or empty.")
    message = serializers.CharField(read_only=True)

    class Meta:
        ref_name = "ImportRowError"


FORM_FIELDS = set(ImportCreateSerializer().fields) | {"entityId"}
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


def _flag(form, name: str) -> bool:
    value = form.get(name, "false").strip().lower()
    if value not in _TRUE | _FALSE:
        raise exceptions.ValidationError({name: ["Must be true or false."]})
    return value in _TRUE


def _chunks(upload):
    yield from upload.chunks(chunk_size=256 * 1024)


IMPORT_ENVELOPE = item_envelope("import", ImportSerializer)


@extend_schema_view(
    list=extend_schema(summary="List imports", description="Newest first."),
    retrieve=extend_schema(summary="Get an import", description="Its progress: processedRows advances while it runs."),
)
class ImportViewSet(ListMixin, RetrieveMixin, EntityScopedViewSet):
    queryset = Import.objects.all()
    serializer_class = ImportSerializer
    filter_backends = []
    item_key = "import"
    list_key = "imports"
    ordering = ("-created_at", "-id")
    parser_classes = [MultiPartParser]

    def narrow_queryset(self, queryset):
        return queryset.defer("options", "headers")

    @extend_schema(
        summary="Import a CSV file",
        description="multipart/form-data. Every row is checked as the API's POST/PATCH would check it; bad rows are "
        "counted and listed (GET .../errors) while the good ones are applied, in file order, in a worker. One import "
        "runs per entity at a time (others wait queued). A file that is not UTF-8 (the line is named), empty, over "
        "1,000,000 rows, or a mapping onto an unknown field or onto one field twice → 400 before anything is queued; "
        "over 50 MB → 413.",
        request={"multipart/form-data": ImportCreateSerializer},
        responses={202: IMPORT_ENVELOPE},
    )
    def create(self, request, *args, **kwargs):
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        if length > settings.IMPORT_MAX_BYTES + 1024 * 1024:
            raise PayloadTooLarge(f"The file is larger than {settings.IMPORT_MAX_BYTES // (1024 * 1024)} MB.")
        form = request.data
        unknown = sorted(set(form) - FORM_FIELDS)
        if unknown:
            raise exceptions.ValidationError({name: ["Unknown field."] for name in unknown})
        upload = request.FILES.get("file")
        if upload is None:
            raise exceptions.ValidationError({"file": ["Upload the CSV file in the field file."]})
        mapping = None
        if form.get("mapping"):
            try:
                mapping = json.loads(form["mapping"])
            except ValueError:
                raise exceptions.ValidationError({"mapping": ["Must be a JSON object."]}) from None
        object_type = form.get("objectType")
        if not object_type:
            raise exceptions.ValidationError({"objectType": ["This field is required."]})
        import_request = ImportRequest(
            object_type=object_type,
            mapping=mapping,
            match_on=form.get("matchOn") or None,
            on_match=form.get("onMatch") or "update",
            dry_run=_flag(form, "dryRun"),
            clear_empty=_flag(form, "clearEmpty"),
            create_companies=_flag(form, "createCompanies"),
        )
        try:
            job = import_create(
                entity=request.entity,
                user=request.user if request.user.is_authenticated else None,
                actor=changes.actor_ref(),
                chunks=_chunks(upload),
                file_name=upload.name,
                request=import_request,
            )
        except ImportTooLarge as exc:
            raise PayloadTooLarge(exc.message) from None
        return self.wrap(job, status_code=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Cancel an import",
        description="A queued import never starts; a running one stops before its next chunk. Rows already "
        "applied stay. A finished import → 409.",
        request=None,
        responses={200: IMPORT_ENVELOPE},
    )
    @action(detail=True, methods=["post"], url_path="cancel", filter_backends=[])
    def cancel(self, request, *args, **kwargs):
        return self.wrap(import_cancel(job=self.get_object()))


@extend_schema(
    parameters=[
        OpenApiParameter("importId", OpenApiTypes.UUID, OpenApiParameter.PATH, description="Import id"),
        OpenApiParameter(
            "format", str, enum=["json", "csv"], description="csv (or Accept: text/csv): the failed rows as a CSV file."
        ),
    ]
)
@extend_schema_view(
    list=extend_schema(
        summary="An import's row errors",
        description="{row, column, message} in row order. With Accept: text/csv or ?format=csv: the failed rows as "
        "they were uploaded plus an error column, ready to fix and upload again.",
        responses={200: ImportErrorSerializer(many=True), (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR)},
    ),
)
class ImportErrorViewSet(ListMixin, EntityScopedViewSet):
    """`/imports/{importId}/errors`."""

    queryset = ImportRowError.objects.all()
    serializer_class = ImportErrorSerializer
    filter_backends = []
    parent_resource = ParentResource(Import, "importId", field="job")
    item_key = "error"
    list_key = "errors"
    ordering = ("row", "id")
    renderer_classes = [JSONRenderer, CsvRenderer]

    def list(self, request, *args, **kwargs):
        if request.accepted_renderer.format == "csv":
            self.paginator.page_params(request)  # the file is whole, but a malformed page is still 400
            job = self.parent
            response = StreamingHttpResponse(
                entity_streamed(job.entity_id, lambda: import_errors_csv(job)), content_type="text/csv; charset=utf-8"
            )
            name = self.parent.file_name.rsplit(".", 1)[0] or "import"
            response["Content-Disposition"] = f'attachment; filename="{name}-errors.csv"'
            return response
        return super().list(request, *args, **kwargs)


def entity_streamed(entity_id, produce):
    """A streamed body runs after the request's transaction has ended: it reads in the entity's
    own scope (row-level security), for as long as the response is being sent."""
    with entity_scope(entity_id):
        yield from produce()
