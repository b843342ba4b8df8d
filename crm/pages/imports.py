"""`/crm/import`: upload a CSV, check the guessed mapping against a preview of the stored rows,
dry-run it, run it and watch it (htmx polling), download the error file; the last imports.

The page calls the same services as `POST /api/crm/imports` (`crm.services.imports`): an upload
here is stored *staged* (not queued) until the mapping is confirmed, then queued like any other.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from axiomatic import changes, errors
from axiomatic.pages import entity_page
from crm.models import Import
from crm.services.imports import (
    MATCH_ON,
    OBJECT_TYPES,
    ImportRequest,
    ImportTooLarge,
    custom_import_fields,
    import_cancel,
    import_create,
    import_fields,
    import_preview,
    import_start,
)

RECENT = 10
PREVIEW_ROWS = 5
IGNORE = ""


def export_url(request, resource: str) -> str:
    """The API's export of `resource` with the list page's filters (not its paging)."""
    query = [(key, value) for key, values in request.GET.lists() if key != "after" for value in values]
    if "entityId" not in request.GET:
        query.append(("entityId", str(request.entity.pk)))
    return f"/api/crm/{resource}/export?{urlencode(query)}"


def _job_or_404(request, import_id) -> Import:
    return get_object_or_404(Import.objects.for_entity(request.entity), pk=import_id)


def _here(request, name: str, *args) -> str:
    return f"{reverse(name, args=args)}?entityId={request.entity.pk}"


@require_http_methods(["GET", "POST"])
@entity_page
def import_page(request):
    error = None
    if request.method == "POST":
        upload = request.FILES.get("file")
        object_type = request.POST.get("objectType", "")
        if upload is None:
            error = "Choose a CSV file."
        else:
            try:
                job = import_create(
                    entity=request.entity,
                    user=request.user,
                    actor=changes.actor_ref(),
                    chunks=upload.chunks(chunk_size=256 * 1024),
                    file_name=upload.name,
                    request=ImportRequest(object_type=object_type, dry_run=True),
                    staged=True,
                )
            except (ImportTooLarge, errors.Invalid) as exc:
                error = exc.message
            else:
                return HttpResponseRedirect(_here(request, "crm-import-detail", job.pk))
    recent = Import.objects.for_entity(request.entity).select_related("created_by").order_by("-created_at")[:RECENT]
    context = {"object_types": OBJECT_TYPES, "imports": recent, "error": error}
    return render(request, "crm/import.html", context, status=400 if error else 200)


def _mapping_context(job: Import) -> dict:
    fields = [*import_fields(job.object_type), *custom_import_fields(entity=job.entity_id, object_type=job.object_type)]
    preview = import_preview(job, rows=PREVIEW_ROWS)
    columns = []
    for index, (header, chosen) in enumerate(zip(job.headers, job.options.get("mapping", []), strict=False)):
        columns.append(
            {
                "index": index,
                "header": header,
                "chosen": chosen or IGNORE,
                "cells": [row[index] if index < len(row) else "" for row in preview],
            }
        )
    return {
        "fields": fields,
        "columns": columns,
        "preview_count": len(preview),
        "match_choices": MATCH_ON[job.object_type],
    }


@require_GET
@entity_page
def import_detail(request, import_id):
    job = _job_or_404(request, import_id)
    context = {"job": job, **_mapping_context(job)}
    return render(request, "crm/import_detail.html", context)


@require_GET
@entity_page
def import_progress(request, import_id):
    """htmx partial: the job's progress, polled every second while it is queued or running."""
    return render(request, "crm/_import_progress.html", {"job": _job_or_404(request, import_id)})


@require_POST
@entity_page
def import_run(request, import_id):
    """Confirm the mapping and options; `mode` dry (a dry run) or real."""
    job = _job_or_404(request, import_id)
    mapping = {}
    for index, header in enumerate(job.headers):
        chosen = request.POST.get(f"column-{index}", IGNORE)
        mapping[header] = chosen or None
    import_request = ImportRequest(
        object_type=job.object_type,
        match_on=request.POST.get("matchOn") or None,
        on_match=request.POST.get("onMatch") or "update",
        dry_run=request.POST.get("mode") != "real",
        clear_empty=request.POST.get("clearEmpty") == "on",
        create_companies=request.POST.get("createCompanies") == "on",
    )
    try:
        started = import_start(
            job=job, mapping=mapping, request=import_request, user=request.user, actor=changes.actor_ref()
        )
    except errors.Invalid as exc:
        messages.error(request, exc.message)
        return HttpResponseRedirect(_here(request, "crm-import-detail", job.pk))
    return HttpResponseRedirect(_here(request, "crm-import-detail", started.pk))


@require_POST
@entity_page
def import_stop(request, import_id):
    job = _job_or_404(request, import_id)
    try:
        import_cancel(job=job)
    except errors.Conflict as exc:
        messages.error(request, exc.message)
    return HttpResponseRedirect(_here(request, "crm-import-detail", job.pk))
