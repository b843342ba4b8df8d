"""Admin for users, entities and memberships, and the entity-scoped base of every app's admin."""

import uuid

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import get_fields_from_path
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.core.paginator import Paginator
from django.db import router, transaction
from django.db.models import Q, Sum
from django.http import HttpResponseRedirect
from django.utils.functional import cached_property

from axiomatic import changes
from axiomatic.counters import counters_supported
from axiomatic.errors import DomainError
from axiomatic.forms import add_domain_error
from axiomatic.models import Change, Entity, EntityCounter, Membership, User
from axiomatic.rls import bypass_rls
from axiomatic.roles import OWNER
from axiomatic.services import membership_ensure, membership_remove, membership_set_role
from axiomatic.tenancy.resolve import administered_entity_ids


def owned_entity_ids(request) -> set | None:
    """Entities where the staff user is owner (may change roles and people); None for superusers."""
    ids = administered_entity_ids(request)
    if ids is None:
        return None
    cached = getattr(request, "_owned_entity_ids", None)
    if cached is None:
        cached = set(
            Membership.objects.filter(user=request.user, role=OWNER, entity_id__in=ids).values_list(
                "entity_id", flat=True
            )
        )
        request._owned_entity_ids = cached
    return cached


def entity_lookup(model) -> str | None:
    """The lookup from `model` to the entity its rows belong to, or None for shared models.

    `id` for the entity itself, `memberships__entity` for users (a user is seen through the
    entities they are a member of), `entity` for every tenant model.
    """
    if model is Entity:
        return "id"
    if model is User:
        return "memberships__entity"
    if any(field.name == "entity" and field.is_relation for field in model._meta.get_fields()):
        return "entity"
    return None


def scope_queryset(queryset, request, path: str | None = None):
    """`queryset` narrowed to the rows of the entities the staff user administers.

    Superusers see every row. A tenant model (or `path` given) is filtered on its entity; a
    model with no entity (groups, permissions) is not tenant data and is left as it is.
    """
    ids = administered_entity_ids(request)
    path = path or entity_lookup(queryset.model)
    if ids is None or path is None:
        return queryset
    scoped = queryset.filter(**{f"{path}__in": ids})
    return scoped.distinct() if "__" in path else scoped  # a user may be in several of them


class ScopedRelatedFieldListFilter(admin.RelatedFieldListFilter):
    """A change-list filter over a relation that offers only the staff user's rows (entities,
    users, marketing lists, stages, ...), never another entity's names."""

    def field_choices(self, field, request, model_admin):
        related = field.related_model
        ordering = self.field_admin_ordering(field, request, model_admin) or related._meta.ordering or ["pk"]
        target = (
            field.remote_field.get_related_field().attname if hasattr(field.remote_field, "get_related_field") else "pk"
        )
        rows = scope_queryset(related._default_manager.all(), request).order_by(*ordering)
        return [(getattr(row, target), str(row)) for row in rows]


class StaffScopeMixin:
    """Limits a model admin (and its relation choices and filters) to the entities the staff user
    administers; superusers see all.

    Every admin of a model with an entity (directly or through a parent) derives from it (a test
    walks the admin registry). What it scopes: the change list, and through it the change,
    delete and history views and the actions; the add and change forms' relation choices (so a
    posted foreign id is "not a valid choice"); autocomplete and raw-id look-ups (which list the
    related model's own, scoped, admin); and the change-list filters over relations. Beneath it,
    PostgreSQL's row-level security shows a staff user who is not a superuser only the rows of
    those entities (`axiomatic.admin_site`).

    `entity_path` is the lookup from the admin's model to its entity (`entity`, or `id` for the
    entity itself, `memberships__entity` for users).
    """

    entity_path = "entity"

    def get_queryset(self, request):
        return scope_queryset(super().get_queryset(request), request, self.entity_path)

    def _scoped_choices(self, db_field, request, kwargs):
        if "queryset" not in kwargs and entity_lookup(db_field.related_model) is not None:
            base = self.get_field_queryset(None, db_field, request)
            if base is None:
                base = db_field.related_model._default_manager.all()
            kwargs["queryset"] = scope_queryset(base, request)
        return kwargs

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        return super().formfield_for_foreignkey(db_field, request, **self._scoped_choices(db_field, request, kwargs))

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        return super().formfield_for_manytomany(db_field, request, **self._scoped_choices(db_field, request, kwargs))

    def get_list_filter(self, request):
        return [_scoped_filter(self.model, item) for item in super().get_list_filter(request)]

    def has_module_permission(self, request):
        ids = administered_entity_ids(request)
        return super().has_module_permission(request) and (ids is None or bool(ids))


def _scoped_filter(model, item):
    """A list_filter entry with its relation filters replaced by `ScopedRelatedFieldListFilter`."""
    if isinstance(item, str):
        field = get_fields_from_path(model, item)[-1]
        return (item, ScopedRelatedFieldListFilter) if field.is_relation else item
    if isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[1], type):
        name, filter_class = item
        if issubclass(filter_class, admin.RelatedFieldListFilter) and not issubclass(
            filter_class, ScopedRelatedFieldListFilter
        ):
            return (name, ScopedRelatedFieldListFilter)
    return item


class ServiceRefusalsMixin:
    """The services' rules shown as form errors in the admin.

    Saves go through the apps' services (in `save_model`/`save_formset`). When a service refuses
    with a `DomainError`, the whole save is rolled back and the form is shown again with the
    service's own message on the field it names — the admin keeps no copy of the rule. A refused
    deletion goes back to the object with the service's message.
    """

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

    def delete_view(self, request, object_id, extra_context=None):
        try:
            with transaction.atomic(using=router.db_for_write(self.model)):
                return super().delete_view(request, object_id, extra_context)
        except DomainError as error:
            self.message_user(request, error.message, level=messages.ERROR)
            return HttpResponseRedirect(request.path.rsplit("/delete/", 1)[0] + "/change/")


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


def user_changeable_by(request, user: User) -> bool:
    """Whether the staff user may change `user` (profile, email, active flag, password).

    Superusers may change anyone. Other staff only people whose every membership is in an entity
    they own — never a superuser, never someone who also belongs (as member, staff or owner)
    to an entity they do not own: changing them would reach into that other entity.
    """
    owned = owned_entity_ids(request)
    if owned is None:
        return True
    if user.is_superuser or not owned:
        return False
    with bypass_rls("staff admin: whether a user belongs to entities the staff user does not own"):
        entity_ids = set(Membership.objects.filter(user=user).values_list("entity_id", flat=True))
    return bool(entity_ids) and entity_ids <= owned


@admin.register(User)
class UserAdmin(StaffScopeMixin, DjangoUserAdmin):
    """People. Superusers manage everyone; other staff see the members of the entities they
    administer and change only those wholly within entities they own (`user_changeable_by`),
    which covers the password view too. Staff rights, permissions and groups are granted by
    superusers only."""

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
            readonly += ["is_staff", "is_superuser", "groups", "user_permissions", "last_login", "date_joined"]
        return readonly

    def has_change_permission(self, request, obj=None):
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or user_changeable_by(request, obj))

    def has_add_permission(self, request):
        return request.user.is_superuser and super().has_add_permission(request)

    def has_delete_permission(self, request, obj=None):
        # A user's memberships may span entities; removing someone from one is the membership's delete.
        return request.user.is_superuser and super().has_delete_permission(request, obj)


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


class MembershipAdminForm(forms.ModelForm):
    class Meta:
        model = Membership
        fields = ["user", "entity", "role"]


@admin.register(Membership)
class MembershipAdmin(ServiceRefusalsMixin, StaffScopeMixin, admin.ModelAdmin):
    """Memberships of the administered entities; only owners (and superusers) add, change roles
    or remove, through the same services as the operator commands (the last owner stays, a
    removed member's keys are revoked)."""

    form = MembershipAdminForm
    list_display = ["user", "entity", "role", "created_at"]
    list_filter = ["role", "entity"]
    search_fields = ["user__email", "entity__name"]
    autocomplete_fields = ["user", "entity"]
    list_select_related = ["user", "entity"]

    def _may_manage(self, request, obj) -> bool:
        owned = owned_entity_ids(request)
        return owned is None or (obj is not None and obj.entity_id in owned)

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        return [*readonly, "user", "entity"] if obj is not None else readonly

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

    def save_model(self, request, obj, form, change):
        if not change:  # a second membership of the same user and entity is refused by the form's constraint check
            created = membership_ensure(user=obj.user, entity=obj.entity, role=obj.role)
            obj.pk, obj._state.adding = created.pk, False
            return
        membership_set_role(entity=obj.entity, user=obj.user, role=form.cleaned_data["role"])

    def delete_model(self, request, obj):
        membership_remove(entity=obj.entity, user=obj.user)

    def delete_queryset(self, request, queryset):
        refused = []
        for membership in queryset.select_related("user", "entity"):
            try:
                with transaction.atomic(using=router.db_for_write(Membership)):
                    membership_remove(entity=membership.entity, user=membership.user)
            except DomainError as error:
                refused.append(f"{membership}: {error.message}")
        for message in refused:
            self.message_user(request, message, level=messages.ERROR)


ADMIN_COUNT_CAP = 10_000
# Query parameters that do not filter a change list (page, ordering, the popup and filter memo).
_UNFILTERING_PARAMS = {"p", "o", "_changelist_filters", "_to_field", "_popup"}


class ReadOnlyAdminMixin:
    """For rows only the system writes (maintained figures, history, the change feed): staff may
    look, never add, edit or delete."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ScalablePaginator(Paginator):
    """The admin's paginator for tables of millions of rows.

    - The count is free when the list is unfiltered (`exact_count`, e.g. the maintained counters)
      and otherwise stops at 10,001 rows (`capped`: the page says "10,000+" rather than lying).
    - A page is read as a deferred join: the page's ids first, through the ordering index alone,
      then only those rows with their related rows — so page 5,000 does not join 500,000 rows.
    """

    def __init__(self, object_list, per_page, *, exact_count=None, **kwargs):
        super().__init__(object_list, per_page, **kwargs)
        self.exact_count = exact_count
        self.capped = False

    @cached_property
    def count(self) -> int:
        if self.exact_count is not None:
            exact = self.exact_count()
            if exact is not None:
                return exact
        counted = self.object_list.order_by().values("pk")[: ADMIN_COUNT_CAP + 1].count()
        self.capped = counted > ADMIN_COUNT_CAP
        return counted

    def page(self, number):
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        ids = list(self.object_list.values_list("pk", flat=True)[bottom : bottom + self.per_page])
        rows = {row.pk: row for row in self.object_list.filter(pk__in=ids)}
        return self._get_page([rows[pk] for pk in ids if pk in rows], number, self)


class EntityScopedAdmin(ServiceRefusalsMixin, StaffScopeMixin, admin.ModelAdmin):
    """The base of every tenant model's admin: entity as a filter, related rows fetched with the
    list, and the services' rules shown as form errors.

    A saved row's entity is read-only: moving it would leave its memberships, leads and
    activities in the old entity, pointing across tenants. Saves go through the apps' services,
    whose refusals read as form errors (`ServiceRefusalsMixin`).
    """

    list_select_related = ["entity"]
    readonly_fields = ["id", "created_at", "updated_at"]
    autocomplete_fields = ["entity"]
    # At a million rows: no second full count, a paginator that counts what it can afford.
    paginator = ScalablePaginator
    show_full_result_count = False
    # The maintained counter (axiomatic.counters) that is this model's unfiltered total.
    counter_name: str | None = None

    def get_readonly_fields(self, request, obj=None):
        readonly = super().get_readonly_fields(request, obj)
        return [*readonly, "entity"] if obj is not None else readonly

    # Change feed (axiomatic.changes): admins whose saves go through a service (save_model
    # overridden) record there; the others, and every deletion, record here.
    def save_model(self, request, obj, form, change):
        if changes.object_type_of(type(obj)) is None:
            return super().save_model(request, obj, form, change)
        with transaction.atomic(using=router.db_for_write(self.model)):
            before = changes.snapshot_fresh(obj) if change else None
            super().save_model(request, obj, form, change)
            changes.record([changes.update(obj, before)])

    def delete_model(self, request, obj):
        if changes.object_type_of(type(obj)) is None:
            return super().delete_model(request, obj)
        changes.delete_recorded(obj)

    def delete_queryset(self, request, queryset):
        if changes.object_type_of(queryset.model) is None:
            return super().delete_queryset(request, queryset)
        changes.delete_recorded(list(queryset))

    def get_paginator(self, request, queryset, per_page, orphans=0, allow_empty_first_page=True):
        unfiltered = not (set(request.GET) - _UNFILTERING_PARAMS)
        exact = None
        if unfiltered and self.counter_name and counters_supported():

            def exact() -> int:
                counters = EntityCounter.objects.filter(name=self.counter_name)
                ids = administered_entity_ids(request)
                if ids is not None:
                    counters = counters.filter(entity_id__in=ids)
                return int(counters.aggregate(total=Sum("value"))["total"] or 0)

        return self.paginator(
            queryset, per_page, orphans=orphans, allow_empty_first_page=allow_empty_first_page, exact_count=exact
        )

    def get_search_results(self, request, queryset, search_term):
        """Exact lookups where the term says what it is (an id, an email); substring search
        otherwise, on the fields the trigram indexes cover (`search_fields`)."""
        term = search_term.strip()
        try:
            return queryset.filter(pk=uuid.UUID(term)), False
        except ValueError:
            pass
        email_fields = getattr(self, "exact_email_fields", ())
        if "@" in term and email_fields and " " not in term:
            match = Q()
            for name in email_fields:
                match |= Q(**{f"{name}__iexact": term})
            return queryset.filter(match), False
        return super().get_search_results(request, queryset, search_term)

    def run_in_batches(self, request, queryset, action, *, batch_size: int = 500, done: str) -> None:
        """Apply a service to the selected rows in bounded batches (one transaction each), then
        report how many succeeded and the first refusals; a refusal skips that row only."""
        succeeded, refusals = 0, []
        ids = list(queryset.order_by("pk").values_list("pk", flat=True))
        for start in range(0, len(ids), batch_size):
            rows = self.get_queryset(request).filter(pk__in=ids[start : start + batch_size]).order_by("pk")
            with transaction.atomic(using=router.db_for_write(self.model)):
                for row in rows:
                    try:
                        with transaction.atomic(using=router.db_for_write(self.model)):
                            action(row)
                    except DomainError as error:
                        refusals.append(f"{row}: {error.message}")
                    else:
                        succeeded += 1
        self.message_user(request, done.format(count=succeeded))
        for refusal in refusals[:10]:
            self.message_user(request, refusal, level=messages.WARNING)
        if len(refusals) > 10:
            self.message_user(request, f"… and {len(refusals) - 10} more refused.", level=messages.WARNING)


@admin.register(EntityCounter)
class EntityCounterAdmin(ReadOnlyAdminMixin, StaffScopeMixin, admin.ModelAdmin):
    """The maintained totals, read-only: database triggers keep them, nobody edits them."""

    list_display = ["name", "value", "entity"]
    list_filter = ["entity"]
    search_fields = ["name"]
    ordering = ["entity", "name"]
    list_select_related = ["entity"]


@admin.register(Change)
class ChangeAdmin(ReadOnlyAdminMixin, StaffScopeMixin, admin.ModelAdmin):
    """The change feed, read-only: services record it with the writes, retention removes it."""

    list_display = ["seq", "type", "object_id", "occurred_at", "actor_type", "entity"]
    list_filter = ["object_type", "entity"]
    search_fields = ["=event_id", "=object_id", "=type"]  # exact: the feed is large
    ordering = ["-id"]
    list_select_related = ["entity"]
    show_full_result_count = False
