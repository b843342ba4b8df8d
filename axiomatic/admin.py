"""Admin for users, entities and memberships, and the entity-scoped base of every app's admin."""

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db import router, transaction

from axiomatic.errors import DomainError
from axiomatic.forms import add_domain_error
from axiomatic.models import Entity, Membership, User
from axiomatic.roles import ADMIN, OWNER


def administered_entity_ids(request) -> set | None:
    """The entities a staff user administers (admin or owner there); None for superusers (all).

    Superusers run the whole service; other staff work only on the entities where they hold the
    admin or owner role, with the same role rules as the API and the pages.
    """
    if request.user.is_superuser:
        return None
    cached = getattr(request, "_administered_entity_ids", None)
    if cached is None:
        cached = set(
            Membership.objects.filter(user=request.user, role__in=[ADMIN, OWNER]).values_list("entity_id", flat=True)
        )
        request._administered_entity_ids = cached
    return cached


def owned_entity_ids(request) -> set | None:
    """Entities where the staff user is owner (may change roles); None for superusers."""
    if request.user.is_superuser:
        return None
    return set(Membership.objects.filter(user=request.user, role=OWNER).values_list("entity_id", flat=True))


class StaffScopeMixin:
    """Limits a model admin (and its relation choices) to the entities the staff user administers.

    `entity_path` is the lookup from the admin's model to its entity (`entity`, or `id` for the
    entity itself, `memberships__entity` for users).
    """

    entity_path = "entity"

    def _scope(self, queryset, request, path: str):
        ids = administered_entity_ids(request)
        if ids is None:
            return queryset
        scoped = queryset.filter(**{f"{path}__in": ids})
        return scoped.distinct() if "__" in path else scoped  # a user may be in several of them

    def get_queryset(self, request):
        return self._scope(super().get_queryset(request), request, self.entity_path)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        ids = administered_entity_ids(request)
        if ids is not None:
            related = db_field.related_model
            if related is Entity:
                kwargs["queryset"] = Entity.objects.filter(pk__in=ids)
            elif related is User:
                kwargs["queryset"] = User.objects.filter(memberships__entity_id__in=ids).distinct()
            elif any(field.name == "entity" for field in related._meta.get_fields()):
                kwargs["queryset"] = related._default_manager.filter(entity_id__in=ids)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_module_permission(self, request):
        ids = administered_entity_ids(request)
        return super().has_module_permission(request) and (ids is None or bool(ids))


class MembershipInline(StaffScopeMixin, admin.TabularInline):
    """Memberships beside a user or an entity; editable by superusers only (other staff use the
    membership admin, where only owners change roles)."""

    model = Membership
    extra = 0
    autocomplete_fields = ["user", "entity"]

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        return readonly if request.user.is_superuser else [*readonly, "user", "entity", "role"]

    def has_add_permission(self, request, obj=None):
        return request.user.is_superuser and super().has_add_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser and super().has_delete_permission(request, obj)


@admin.register(User)
class UserAdmin(StaffScopeMixin, DjangoUserAdmin):
    entity_path = "memberships__entity"
    ordering = ["email"]
    list_display = ["email", "name", "is_staff", "is_active", "date_joined"]
    list_filter = ["is_staff", "is_active", "is_superuser"]
    search_fields = ["email", "name"]
    inlines = [MembershipInline]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("name",)}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "name", "password1", "password2")}),)

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            # Only superusers hand out staff rights; a shared user's password is theirs to change.
            readonly += ["is_staff", "is_superuser", "groups", "user_permissions", "password"]
        return readonly

    def has_add_permission(self, request):
        return request.user.is_superuser and super().has_add_permission(request)


@admin.register(Entity)
class EntityAdmin(StaffScopeMixin, admin.ModelAdmin):
    entity_path = "id"
    list_display = ["name", "default_currency", "time_zone", "created_at", "id"]
    list_filter = ["default_currency", "time_zone"]
    search_fields = ["name", "id"]
    ordering = ["name"]
    readonly_fields = ["id", "created_at"]
    inlines = [MembershipInline]

    def has_add_permission(self, request):
        return request.user.is_superuser and super().has_add_permission(request)

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser and super().has_delete_permission(request, obj)


@admin.register(Membership)
class MembershipAdmin(StaffScopeMixin, admin.ModelAdmin):
    """Memberships of the administered entities; only owners (and superusers) change roles."""

    list_display = ["user", "entity", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__email", "entity__name"]
    autocomplete_fields = ["user", "entity"]
    list_select_related = ["user", "entity"]

    def _may_manage(self, request, obj) -> bool:
        owned = owned_entity_ids(request)
        return owned is None or (obj is not None and obj.entity_id in owned)

    def has_change_permission(self, request, obj=None):
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or self._may_manage(request, obj))

    def has_delete_permission(self, request, obj=None):
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or self._may_manage(request, obj))

    def has_add_permission(self, request):
        owned = owned_entity_ids(request)
        return super().has_add_permission(request) and (owned is None or bool(owned))

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        owned = owned_entity_ids(request)
        if db_field.name == "entity" and owned is not None:
            field.queryset = field.queryset.filter(pk__in=owned)  # roles are given by owners only
        return field


class EntityScopedAdmin(StaffScopeMixin, admin.ModelAdmin):
    """The base of every tenant model's admin: entity as a filter, related rows fetched with the
    list, and the services' rules shown as form errors.

    A saved row's entity is read-only: moving it would leave its memberships, leads and
    activities in the old entity, pointing across tenants.

    Saves go through the apps' services (in `save_model`/`save_formset`). When a service refuses
    with a `DomainError`, the whole save is rolled back and the form is shown again with the
    service's own message on the field it names — the admin keeps no copy of the rule.
    """

    list_select_related = ["entity"]
    readonly_fields = ["id", "created_at", "updated_at"]
    autocomplete_fields = ["entity"]

    def get_readonly_fields(self, request, obj=None):
        readonly = super().get_readonly_fields(request, obj)
        return [*readonly, "entity"] if obj is not None else readonly

    def _changeform_view(self, request, object_id, form_url, extra_context):
        try:
            with transaction.atomic(using=router.db_for_write(self.model)):
                return super()._changeform_view(request, object_id, form_url, extra_context)
        except DomainError as error:
            # Render the same submission again; the form reports the refusal (nothing was saved).
            request._domain_error = error
            return super()._changeform_view(request, object_id, form_url, extra_context)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form_class = super().get_form(request, obj, change=change, **kwargs)
        error = getattr(request, "_domain_error", None)
        if error is None:
            return form_class

        class RefusedByService(form_class):
            def _post_clean(self):
                super()._post_clean()
                add_domain_error(self, error)

        return RefusedByService

    def run_service_action(self, request, rows, action, *, done: str) -> None:
        """Apply a service to each selected row; report how many succeeded and each refusal."""
        succeeded = 0
        for row in rows:
            try:
                with transaction.atomic(using=router.db_for_write(self.model)):
                    action(row)
            except DomainError as error:
                self.message_user(request, f"{row}: {error.message}", level=messages.ERROR)
            else:
                succeeded += 1
        self.message_user(request, done.format(count=succeeded))
