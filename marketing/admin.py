"""Staff admin for marketing lists and members; unsubscribing goes through the service."""

from django import forms
from django.contrib import admin
from django.db.models import Count

from axiomatic.admin import EntityScopedAdmin
from marketing.models import MarketingList, MarketingListMember
from marketing.services import member_unsubscribe


class MarketingListMemberInline(admin.TabularInline):
    """The newest members of a list, read-only (adds come through `list_add_contacts`)."""

    model = MarketingListMember
    fk_name = "marketing_list"
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ["email", "contact", "status", "source", "added_at"]
    readonly_fields = fields
    ordering = ["-added_at", "id"]
    max_num = 0

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("contact")


@admin.register(MarketingList)
class MarketingListAdmin(EntityScopedAdmin):
    list_display = ["name", "entity", "member_count", "created_at"]
    list_filter = ["entity"]
    search_fields = ["name", "description"]
    ordering = ["name", "id"]
    list_select_related = ["entity"]
    autocomplete_fields = ["entity"]
    readonly_fields = ["id", "created_at", "updated_at"]
    inlines = [MarketingListMemberInline]

    def get_queryset(self, request):
        # One GROUP BY for the whole changelist page instead of a count per row.
        return super().get_queryset(request).annotate(member_count=Count("members"))

    @admin.display(description="members", ordering="member_count")
    def member_count(self, obj) -> int:
        return obj.member_count


class MarketingListMemberAdminForm(forms.ModelForm):
    class Meta:
        model = MarketingListMember
        fields = ["entity", "marketing_list", "contact", "email", "status", "source", "added_at"]

    def clean(self):
        data = super().clean()
        entity = data.get("entity") or getattr(self.instance, "entity", None)
        for name in ("marketing_list", "contact"):
            related = data.get(name)
            if entity is not None and related is not None and related.entity_id != entity.pk:
                self.add_error(name, "Must belong to the member's entity.")
        return data


@admin.register(MarketingListMember)
class MarketingListMemberAdmin(EntityScopedAdmin):
    form = MarketingListMemberAdminForm
    list_display = ["email", "marketing_list", "contact", "status", "source", "added_at", "entity"]
    list_filter = ["status", "source", "entity", "marketing_list"]
    search_fields = ["email", "marketing_list__name", "contact__first_name", "contact__last_name"]
    ordering = ["-added_at", "id"]
    date_hierarchy = "added_at"
    list_select_related = ["entity", "marketing_list", "contact"]
    autocomplete_fields = ["entity", "marketing_list", "contact"]
    readonly_fields = ["id", "unsubscribed_at", "created_at", "updated_at"]
    actions = ["unsubscribe_selected"]

    @admin.action(description="Unsubscribe selected members (keeps the rows)")
    def unsubscribe_selected(self, request, queryset):
        count = 0
        for member in queryset:
            member_unsubscribe(member=member)
            count += 1
        self.message_user(request, f"Unsubscribed {count} member(s).")
