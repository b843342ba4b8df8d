"""Admin of CSV imports: read-only (jobs are written by the import service and its worker), scoped
to the staff member's entities like every tenant admin. Imported by `crm.admin`."""

from __future__ import annotations

from django.contrib import admin

from axiomatic.admin import EntityScopedAdmin, ReadOnlyAdminMixin
from crm.models import Import, ImportFileSlice, ImportRowError


@admin.register(Import)
class ImportAdmin(ReadOnlyAdminMixin, EntityScopedAdmin):
    """Imports and their progress; cancel them through the API or the import page."""

    list_display = ["file_name", "object_type", "status", "dry_run", "processed_rows", "total_rows", "failed", "entity"]
    list_filter = ["status", "object_type", "entity"]
    search_fields = ["file_name"]
    ordering = ["-created_at", "-id"]
    list_select_related = ["entity"]
    exclude = ["options", "headers"]
    readonly_fields = []


@admin.register(ImportRowError)
class ImportRowErrorAdmin(ReadOnlyAdminMixin, EntityScopedAdmin):
    """The rows an import could not apply, with the message the API would have given."""

    list_display = ["job", "row", "column", "message", "entity"]
    list_filter = ["entity"]
    search_fields = ["message"]
    ordering = ["job", "row", "id"]
    list_select_related = ["job", "entity"]
    readonly_fields = []


@admin.register(ImportFileSlice)
class ImportFileSliceAdmin(ReadOnlyAdminMixin, EntityScopedAdmin):
    """The stored slices of uploaded files (bytes not shown)."""

    list_display = ["job", "number", "entity"]
    list_filter = ["entity"]
    search_fields = ["job__file_name"]
    ordering = ["job", "number"]
    list_select_related = ["job", "entity"]
    exclude = ["data"]
    readonly_fields = []
