"""Staff admin for the CRM models: useful columns, search, filters; writes with rules use services."""

from django.contrib import admin

from crm.models import Activity, Company, CompanyMembership, Contact, Lead, LeadEvent, PipelineStage


class EntityScopedAdmin(admin.ModelAdmin):
    """Common admin settings: entity as a filter, related rows fetched with the list."""

    list_select_related = ["entity"]
    readonly_fields = ["id", "created_at", "updated_at"]
    autocomplete_fields = ["entity"]


@admin.register(Company)
class CompanyAdmin(EntityScopedAdmin):
    list_display = ["name", "domain", "role", "status", "owner", "entity", "created_at"]
    list_filter = ["role", "status", "entity"]
    search_fields = ["name", "domain", "email"]
    ordering = ["name", "id"]
    list_select_related = ["entity", "owner"]
    autocomplete_fields = ["entity", "owner"]
    readonly_fields = [*EntityScopedAdmin.readonly_fields, "archived_at"]


class MembershipInline(admin.TabularInline):
    model = CompanyMembership
    fk_name = "contact"
    extra = 0
    fields = ["company", "title", "is_primary", "start_date", "end_date"]
    autocomplete_fields = ["company"]


@admin.register(Contact)
class ContactAdmin(EntityScopedAdmin):
    list_display = ["__str__", "email", "phone", "owner", "entity", "created_at"]
    list_filter = ["entity"]
    search_fields = ["first_name", "last_name", "email"]
    ordering = ["last_name", "first_name", "id"]
    list_select_related = ["entity", "owner"]
    autocomplete_fields = ["entity", "owner"]
    inlines = [MembershipInline]


@admin.register(CompanyMembership)
class CompanyMembershipAdmin(EntityScopedAdmin):
    list_display = ["contact", "company", "title", "is_primary", "start_date", "end_date"]
    list_filter = ["is_primary", "entity"]
    search_fields = ["contact__first_name", "contact__last_name", "contact__email", "company__name"]
    list_select_related = ["entity", "contact", "company"]
    autocomplete_fields = ["entity", "contact", "company"]


@admin.register(PipelineStage)
class PipelineStageAdmin(EntityScopedAdmin):
    list_display = [
        "name",
        "entity",
        "kind",
        "sort_order",
        "default_probability_pct",
        "color_key",
        "system_key",
    ]
    list_filter = ["kind", "entity"]
    search_fields = ["name", "system_key"]
    ordering = ["entity", "sort_order"]
    readonly_fields = [*EntityScopedAdmin.readonly_fields, "system_key"]


class LeadEventInline(admin.TabularInline):
    """The lead's timeline, read-only: history is written by services, never edited."""

    model = LeadEvent
    extra = 0
    can_delete = False
    fields = ["occurred_at", "kind", "actor_type", "actor_name", "summary"]
    readonly_fields = fields
    ordering = ["-occurred_at", "-id"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Lead)
class LeadAdmin(EntityScopedAdmin):
    list_display = [
        "title",
        "stage",
        "value",
        "currency",
        "probability_pct",
        "owner",
        "company",
        "updated_at",
    ]
    list_filter = ["stage__kind", "currency", "entity"]
    search_fields = ["title", "company__name", "contact__email"]
    ordering = ["-updated_at", "id"]
    list_select_related = ["entity", "stage", "owner", "company"]
    autocomplete_fields = ["entity", "owner", "company", "contact"]
    readonly_fields = [*EntityScopedAdmin.readonly_fields, "closed_at", "stage_changed_at"]
    inlines = [LeadEventInline]


@admin.register(Activity)
class ActivityAdmin(EntityScopedAdmin):
    list_display = ["subject", "type", "status", "occurred_at", "due_at", "assignee", "lead", "entity"]
    list_filter = ["type", "status", "entity"]
    search_fields = ["subject", "body"]
    ordering = ["-occurred_at", "id"]
    date_hierarchy = "occurred_at"
    list_select_related = ["entity", "assignee", "lead"]
    autocomplete_fields = ["entity", "assignee", "created_by", "lead", "company", "contact"]
