"""Admin for users, entities and memberships (new entities get default stages via post_save)."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

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
