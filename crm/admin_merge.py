"""The admin's side of duplicates and merge: a "Merge the two selected" action on the company and
contact change lists (through `crm.services.merge`, like the API and the page), and read-only
lists of the duplicate pairs the services keep."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db import router, transaction

from axiomatic import errors
from axiomatic.admin import EntityScopedAdmin, ReadOnlyAdminMixin
from crm.models import Company, CompanyDuplicate, ContactDuplicate, DuplicateDismissal, MergedRecord
from crm.services.actors import Actor
from crm.services.merge import company_merge, contact_merge


class MergeActionMixin:
    """`merge_two`: exactly two rows of one entity selected; the older one survives (its id is the
    one links and integrations have known longest) and takes the other's data."""

    actions = ["merge_two"]

    @admin.action(description="Merge the two selected (the older one stays)")
    def merge_two(self, request, queryset):
        rows = list(queryset.order_by("created_at", "pk")[:3])
        if len(rows) != 2:
            self.message_user(request, "Select exactly two records to merge.", messages.ERROR)
            return
        survivor, merged = rows
        if survivor.entity_id != merged.entity_id:
            self.message_user(request, "The two records belong to different entities.", messages.ERROR)
            return
        merge = company_merge if isinstance(survivor, Company) else contact_merge
        target = {"company" if isinstance(survivor, Company) else "contact": survivor}
        try:
            with transaction.atomic(using=router.db_for_write(self.model)):
                result = merge(**target, merge_id=merged.pk, actor=Actor.for_user(request.user))
        except errors.DomainError as error:
            self.message_user(request, error.message, messages.ERROR)
            return
        moved = ", ".join(f"{n} {name}" for name, n in result.moved.items() if n) or "nothing else"
        self.message_user(request, f"Merged {merged} into {result.survivor} (moved {moved}).")


class _PairAdmin(ReadOnlyAdminMixin, EntityScopedAdmin):
    """The pairs the services found, strongest first (read-only: merge or dismiss them on
    /crm/duplicates or through the API)."""

    list_display = ["first", "second", "score", "reasons", "entity"]
    list_filter = ["entity"]
    ordering = ["-score", "id"]
    list_select_related = ["entity", "first", "second"]
    readonly_fields = []


@admin.register(ContactDuplicate)
class ContactDuplicateAdmin(_PairAdmin):
    pass


@admin.register(CompanyDuplicate)
class CompanyDuplicateAdmin(_PairAdmin):
    pass


@admin.register(DuplicateDismissal)
class DuplicateDismissalAdmin(EntityScopedAdmin):
    """Pairs someone said are no duplicates. Deleting one lets the pair be offered again (from the
    next write to either record, or `manage.py duplicates_rebuild`); nothing else is editable."""

    list_display = ["kind", "first_id", "second_id", "entity", "created_at"]
    list_filter = ["kind", "entity"]
    ordering = ["-created_at", "id"]
    list_select_related = ["entity"]
    readonly_fields = ["kind", "first_id", "second_id"]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(MergedRecord)
class MergedRecordAdmin(ReadOnlyAdminMixin, EntityScopedAdmin):
    """The tombstones of merged records (what a read of a merged id answers), read-only."""

    list_display = ["kind", "merged_id", "survivor_id", "entity", "created_at"]
    list_filter = ["kind", "entity"]
    ordering = ["-created_at", "id"]
    list_select_related = ["entity"]
    readonly_fields = []
