"""Staff admin for marketing lists and members; unsubscribing goes through the service."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.db.models import Count

from axiomatic.admin import EntityScopedAdmin, StaffScopeMixin
from crm.admin import ContactAdmin
from marketing.models import MarketingList, MarketingListMember, MemberSource
from marketing.services import MAX_IDS_PER_ADD, list_add_contacts, list_create, list_update, member_unsubscribe


class MarketingListMemberInline(StaffScopeMixin, admin.TabularInline):
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


class MarketingListAdminForm(forms.ModelForm):
    class Meta:
        model = MarketingList
        fields = "__all__"  # noqa: DJ007 - the admin chooses the fields, as it would without this form

    def _get_validation_exclusions(self):
        return {*super()._get_validation_exclusions(), "name"}  # a taken name: the service's 409 sentence


@admin.register(MarketingList)
class MarketingListAdmin(EntityScopedAdmin):
    """Saves go through `list_create` / `list_update` (names unique per entity ignoring case, the
    change recorded), so the admin refuses a taken name with the API's sentence."""

    form = MarketingListAdminForm
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

    def save_model(self, request, obj, form, change):
        fields = {name: form.cleaned_data[name] for name in form.changed_data if name in ("name", "description")}
        if not change:
            obj.pk = list_create(entity=form.cleaned_data["entity"], **fields).pk
            obj._state.adding = False
            return
        list_update(marketing_list=MarketingList.objects.get(pk=obj.pk), **fields)
        obj.refresh_from_db()

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
    search_fields = ["marketing_list__name"]
    exact_email_fields = ["email"]
    ordering = ["-added_at", "id"]
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


# --- "Add to a marketing list" on the CRM's contact admin (marketing depends on the CRM, not back).


class ContactActionForm(ActionForm):
    marketing_list = forms.CharField(
        required=False, label="Marketing list", help_text="The list's name, in each contact's entity."
    )


@admin.action(description="Add selected contacts to the marketing list named below")
def add_contacts_to_marketing_list(modeladmin, request, queryset):
    """Adds in batches of at most MAX_IDS_PER_ADD through `list_add_contacts` (the API's rules:
    no email or an opt-out is skipped, never re-added) and reports what happened."""
    name = (request.POST.get("marketing_list") or "").strip()
    if not name:
        modeladmin.message_user(request, "Name the marketing list to add the contacts to.", messages.ERROR)
        return
    added = already = skipped = 0
    missing_entities = set()
    rows = queryset.order_by("entity_id", "pk").values_list("entity_id", "pk")
    by_entity: dict = {}
    for entity_id, contact_id in rows:
        by_entity.setdefault(entity_id, []).append(contact_id)
    for entity_id, contact_ids in by_entity.items():
        marketing_list = MarketingList.objects.for_entity(entity_id).named_ignoring_case(name).first()
        if marketing_list is None:
            missing_entities.add(entity_id)
            continue
        for start in range(0, len(contact_ids), MAX_IDS_PER_ADD):
            result = list_add_contacts(
                marketing_list=marketing_list,
                contact_ids=contact_ids[start : start + MAX_IDS_PER_ADD],
                source=MemberSource.ADMIN,
            )
            added, already, skipped = (
                added + result.added,
                already + result.already_on_list,
                skipped + len(result.skipped),
            )
    modeladmin.message_user(
        request,
        f"Added {added} contact(s) to {name!r}; {already} already on it; {skipped} skipped (no email or opted out).",
    )
    if missing_entities:
        modeladmin.message_user(
            request, f"No list named {name!r} in {len(missing_entities)} of the contacts' entities.", messages.WARNING
        )


ContactAdmin.action_form = ContactActionForm
ContactAdmin.actions = [*(ContactAdmin.actions or []), add_contacts_to_marketing_list]
