"""Admin for users, entities and memberships, and the entity-scoped base of every app's admin."""

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db import router, transaction

from axiomatic.errors import DomainError
from axiomatic.forms import add_domain_error
from axiomatic.models import Entity, Membership, User


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user", "entity"]


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
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


@admin.register(Entity)
class EntityAdmin(admin.ModelAdmin):
    list_display = ["name", "default_currency", "time_zone", "created_at", "id"]
    list_filter = ["default_currency", "time_zone"]
    search_fields = ["name", "id"]
    ordering = ["name"]
    readonly_fields = ["id", "created_at"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "entity", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__email", "entity__name"]
    autocomplete_fields = ["user", "entity"]
    list_select_related = ["user", "entity"]


class EntityScopedAdmin(admin.ModelAdmin):
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
