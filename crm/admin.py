"""Staff admin for the CRM models: useful columns, search, filters; writes with rules use services."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm

from axiomatic import errors
from axiomatic.admin import EntityScopedAdmin, ReadOnlyAdminMixin, StaffScopeMixin
from axiomatic.models import Membership
from crm.admin_custom_fields import CustomFieldValuesFormMixin, lead_custom_fields_apply
from crm.admin_merge import MergeActionMixin
from crm.forms import API_MESSAGES
from crm.models import (
    Activity,
    Company,
    CompanyMembership,
    Contact,
    Lead,
    LeadEvent,
    PipelineFigure,
    PipelineStage,
)
from crm.services.activities import activity_save_new, activity_update
from crm.services.actors import Actor
from crm.services.companies import (
    company_country_normalise,
    company_create,
    company_domain_normalise,
    company_update,
)
from crm.services.contacts import (
    contact_create,
    contact_memberships_save,
    contact_update,
    membership_create,
    membership_update,
)
from crm.services.leads import lead_move_stage, lead_save_new, lead_update
from crm.services.pipeline import stage_resolve, stage_save_new, stage_update


class CompanyAdminForm(CustomFieldValuesFormMixin, forms.ModelForm):
    """The company's fields; the domain and country are checked and normalised by the company
    service's own rules (as the API and the pages are), and a taken domain is the service's 409
    sentence rather than the model constraint's."""

    class Meta:
        model = Company
        fields = "__all__"  # noqa: DJ007 - the admin chooses the fields, as it would without this form

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():  # a value too long reads as the API and the pages say it
            field.error_messages["max_length"] = API_MESSAGES["max_length"]

    def clean_domain(self) -> str | None:
        return errors.field_rule(company_domain_normalise, self.cleaned_data.get("domain"))

    def clean_country(self) -> str:
        return errors.field_rule(company_country_normalise, self.cleaned_data.get("country"))

    def _get_validation_exclusions(self):
        return {*super()._get_validation_exclusions(), "domain"}  # uniqueness: the service's rule


@admin.register(Company)
class CompanyAdmin(MergeActionMixin, EntityScopedAdmin):
    """Saves go through the company service: the domain normalised, `archived_at` kept with the
    status, the change recorded."""

    form = CompanyAdminForm
    list_display = ["name", "domain", "role", "status", "owner", "entity", "created_at"]
    list_filter = ["role", "status", "entity"]
    # Substring search on the name (trigram index); ids, emails and domains match exactly.
    search_fields = ["name"]
    exact_email_fields = ["email"]
    ordering = ["name", "id"]
    counter_name = "company"

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip().lower()
        if "." in term and " " not in term and "@" not in term:
            by_domain = queryset.filter(domain=term)
            if by_domain.exists():
                return by_domain, False
        return super().get_search_results(request, queryset, search_term)

    list_select_related = ["entity", "owner"]
    autocomplete_fields = ["entity", "owner"]
    readonly_fields = [*EntityScopedAdmin.readonly_fields, "archived_at"]

    def save_model(self, request, obj, form, change):
        fields = {name: form.cleaned_data[name] for name in form.changed_data if name in form.cleaned_data}
        fields.pop("entity", None)
        if not change:
            created = company_create(entity=form.cleaned_data["entity"], **fields)
            obj.pk, obj.domain, obj.country, obj.archived_at = (
                created.pk,
                created.domain,
                created.country,
                created.archived_at,
            )
            obj._state.adding = False
            return
        company_update(company=Company.objects.get(pk=obj.pk), **fields)
        obj.refresh_from_db()


class ContactAdminForm(CustomFieldValuesFormMixin, forms.ModelForm):
    """The contact's own fields; email normalising, the name-or-email rule and uniqueness are the
    contact service's (shown here as form errors)."""

    class Meta:
        model = Contact
        fields = ["entity", "first_name", "last_name", "email", "phone", "title", "owner", "linkedin_url", "notes"]


class MembershipInline(StaffScopeMixin, admin.TabularInline):
    model = CompanyMembership
    fk_name = "contact"
    extra = 0
    fields = ["company", "title", "is_primary", "start_date", "end_date"]
    autocomplete_fields = ["company"]


@admin.register(Contact)
class ContactAdmin(MergeActionMixin, EntityScopedAdmin):
    form = ContactAdminForm
    list_display = ["__str__", "email", "phone", "owner", "entity", "created_at"]
    list_filter = ["entity"]
    search_fields = ["first_name", "last_name"]
    exact_email_fields = ["email"]
    ordering = ["last_name", "first_name", "id"]
    counter_name = "contact"
    list_select_related = ["entity", "owner"]
    autocomplete_fields = ["entity", "owner"]
    inlines = [MembershipInline]

    def save_model(self, request, obj, form, change):
        fields = {name: form.cleaned_data[name] for name in form.changed_data if name in form.cleaned_data}
        fields.pop("entity", None)
        if not change:
            created = contact_create(entity=form.cleaned_data["entity"], **fields)
            obj.pk, obj.email = created.pk, created.email
            obj._state.adding = False
            return
        contact_update(contact=Contact.objects.get(pk=obj.pk), **fields)
        obj.refresh_from_db()

    def save_formset(self, request, form, formset, change):
        if formset.model is not CompanyMembership:
            return super().save_formset(request, form, formset, change)
        memberships = formset.save(commit=False)
        contact_memberships_save(contact=form.instance, memberships=memberships, deleted=formset.deleted_objects)
        formset.save_m2m()


class CompanyMembershipAdminForm(forms.ModelForm):
    """The primary flag is applied by the service (demote the old primary, then promote), so it is
    not a model field of the form; the entity is the contact's."""

    make_primary = forms.BooleanField(
        required=False,
        label="Primary",
        help_text="The contact's primary company; checking it demotes the current primary membership.",
    )

    class Meta:
        model = CompanyMembership
        fields = ["contact", "company", "title", "start_date", "end_date"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["make_primary"].initial = bool(self.instance.pk and self.instance.is_primary)


@admin.register(CompanyMembership)
class CompanyMembershipAdmin(EntityScopedAdmin):
    form = CompanyMembershipAdminForm
    list_display = ["contact", "company", "title", "is_primary", "start_date", "end_date"]
    list_filter = ["is_primary", "entity"]
    search_fields = ["contact__first_name", "contact__last_name", "contact__email", "company__name"]
    list_select_related = ["entity", "contact", "company"]
    autocomplete_fields = ["contact", "company"]
    readonly_fields = [*EntityScopedAdmin.readonly_fields, "entity"]
    fields = ["id", "entity", "contact", "company", "title", "make_primary", "start_date", "end_date"]

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if not change:
            created = membership_create(
                contact=data["contact"],
                company=data["company"],
                title=data.get("title") or "",
                is_primary=True if data.get("make_primary") else None,  # unchecked: the first one still becomes primary
                start_date=data.get("start_date"),
                end_date=data.get("end_date"),
            )
            # The admin reads the saved object (for its messages and redirect) from `obj`.
            obj.pk, obj.entity_id, obj.is_primary = created.pk, created.entity_id, created.is_primary
            return
        fields = {
            name: data[name] for name in form.changed_data if name in ("company", "title", "start_date", "end_date")
        }
        if "make_primary" in form.changed_data:
            fields["is_primary"] = data["make_primary"]
        membership_update(membership=obj, **fields)

    def get_readonly_fields(self, request, obj=None):
        readonly = super().get_readonly_fields(request, obj)
        # A membership stays with its contact (delete it and add another to move someone).
        return [*readonly, "contact"] if obj is not None else readonly


class PipelineStageAdminForm(forms.ModelForm):
    """Stage fields; the stage service's rules (unique names ignoring case, the fixed kind of
    system stages, at least one stage of each kind) come back as form errors."""

    class Meta:
        model = PipelineStage
        fields = ["entity", "name", "kind", "default_probability_pct", "color_key"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "default_probability_pct" in self.fields:
            self.fields["default_probability_pct"].required = False
            self.fields["default_probability_pct"].help_text = "Empty: 100 for won stages, 0 otherwise."

    def clean_name(self):
        name = (self.cleaned_data.get("name") or "").strip()
        if not name:
            raise forms.ValidationError("The name must not be blank.")
        return name


@admin.register(PipelineStage)
class PipelineStageAdmin(EntityScopedAdmin):
    """Stages are added at the end and edited through the stage services. Order changes with the
    reorder API and deletion (which may need to move leads) through the API, so neither is here."""

    form = PipelineStageAdminForm
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
    readonly_fields = [*EntityScopedAdmin.readonly_fields, "sort_order", "system_key"]

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        if not change:
            stage_save_new(stage=obj)
            return
        editable = ("name", "kind", "default_probability_pct", "color_key")
        fields = {name: form.cleaned_data[name] for name in form.changed_data if name in editable}
        stage = stage_update(stage=PipelineStage.objects.get(pk=obj.pk), **fields)
        obj.refresh_from_db()
        return stage


@admin.register(PipelineFigure)
class PipelineFigureAdmin(ReadOnlyAdminMixin, EntityScopedAdmin):
    """The pipeline's maintained figures, read-only: the leads' trigger keeps them."""

    list_display = ["stage", "currency", "owner_id", "lead_count", "value_sum", "weighted_sum", "entity"]
    list_filter = ["entity"]
    ordering = ["entity", "stage", "currency"]
    list_select_related = ["entity", "stage"]
    readonly_fields = []


class LeadEventInline(StaffScopeMixin, admin.TabularInline):
    """The lead's timeline, read-only: history is written by services, never edited."""

    model = LeadEvent
    extra = 0
    can_delete = False
    fields = ["occurred_at", "kind", "actor_type", "actor_name", "summary"]
    readonly_fields = fields
    ordering = ["-occurred_at", "-id"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(LeadEvent)
class LeadEventAdmin(ReadOnlyAdminMixin, StaffScopeMixin, admin.ModelAdmin):
    """Every timeline event, searchable across leads; read-only (history is written by services)."""

    list_display = ["occurred_at", "kind", "summary", "lead", "actor_type", "actor_name", "entity"]
    list_filter = ["kind", "actor_type", "entity"]
    search_fields = ["lead__title"]
    ordering = ["-occurred_at", "-id"]
    list_select_related = ["lead", "entity"]


class _EntityRowsForm(forms.ModelForm):
    """Admin forms list every entity's rows; refuse links across entities as the API does."""

    entity_fields: tuple[str, ...] = ()
    member_fields: tuple[str, ...] = ()

    def clean(self):
        cleaned = super().clean()
        entity = cleaned.get("entity") or getattr(self.instance, "entity", None)
        if entity is None:
            return cleaned
        for name in self.entity_fields:
            value = cleaned.get(name)
            if value is not None and value.entity_id != entity.pk:
                self.add_error(name, "This belongs to another entity.")
        for name in self.member_fields:
            value = cleaned.get(name)
            if value is not None and not Membership.objects.filter(user=value, entity=entity).exists():
                self.add_error(name, "This user is not a member of the entity.")
        return cleaned


class LeadAdminForm(CustomFieldValuesFormMixin, _EntityRowsForm):
    entity_fields = ("stage", "company", "contact")
    member_fields = ("owner",)

    class Meta:
        model = Lead
        fields = [
            "entity",
            "title",
            "company",
            "contact",
            "stage",
            "value",
            "currency",
            "probability_pct",
            "expected_close_date",
            "owner",
            "source",
            "notes",
            "lost_reason",
        ]


class LeadActionForm(ActionForm):
    """The admin's action bar for leads: the target of "move to stage"."""

    stage = forms.CharField(
        required=False, label="Stage", help_text="A stage name or system key (won, lost, ...) of each lead's entity."
    )


@admin.register(Lead)
class LeadAdmin(EntityScopedAdmin):
    """Saves go through the lead services: a stage change is a `lead_move_stage` (closedAt,
    probability, timeline event with the staff user as actor) and field edits are recorded."""

    form = LeadAdminForm
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
    list_filter = ["stage__kind", "entity"]
    search_fields = ["title"]
    ordering = ["-updated_at", "id"]
    counter_name = "lead"
    actions = ["move_to_stage"]
    action_form = LeadActionForm
    list_select_related = ["entity", "stage", "owner", "company"]
    autocomplete_fields = ["entity", "owner", "company", "contact"]
    readonly_fields = [*EntityScopedAdmin.readonly_fields, "closed_at", "stage_changed_at"]
    inlines = [LeadEventInline]

    def save_model(self, request, obj, form, change):
        actor = Actor.for_user(request.user)
        if not change:
            lead_custom_fields_apply(obj, form.cleaned_data.get("custom_fields"))
            lead_save_new(lead=obj, actor=actor)
            return
        fields = {name: form.cleaned_data[name] for name in form.changed_data if name in form.cleaned_data}
        fields.pop("entity", None)
        lead_update(lead=obj, actor=actor, **fields)
        obj.refresh_from_db()

    @admin.action(description="Move selected leads to the stage named below")
    def move_to_stage(self, request, queryset):
        reference = (request.POST.get("stage") or "").strip()
        if not reference:
            self.message_user(request, "Name the target stage (a name or a system key such as won).", messages.ERROR)
            return
        actor = Actor.for_user(request.user)

        def move(lead: Lead) -> None:
            stage = stage_resolve(entity=lead.entity_id, reference=reference)
            if stage is None:
                raise errors.Invalid(f"{lead.entity} has no stage {reference!r}.", field="stage")
            lead_move_stage(lead=lead, stage=stage, actor=actor)

        self.run_in_batches(request, queryset.select_related("stage"), move, done="Moved {count} lead(s).")


class ActivityAdminForm(_EntityRowsForm):
    entity_fields = ("lead", "company", "contact")
    member_fields = ("assignee",)

    class Meta:
        model = Activity
        fields = [
            "entity",
            "type",
            "subject",
            "body",
            "status",
            "occurred_at",
            "due_at",
            "duration_minutes",
            "outcome",
            "lead",
            "company",
            "contact",
            "project_id",
            "assignee",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, help_text in (
            ("status", "Empty: open for tasks, completed otherwise."),
            ("occurred_at", "Empty: now."),
        ):
            if name in self.fields:
                self.fields[name].required = False
                self.fields[name].help_text = help_text


@admin.register(Activity)
class ActivityAdmin(EntityScopedAdmin):
    """Saves go through the activity services: status defaults, completedAt, the lead's timeline."""

    form = ActivityAdminForm
    list_display = ["subject", "type", "status", "occurred_at", "due_at", "assignee", "lead", "entity"]
    list_filter = ["type", "status", "entity"]
    search_fields = ["subject"]
    ordering = ["-occurred_at", "id"]
    counter_name = "activity"
    list_select_related = ["entity", "assignee", "lead"]
    autocomplete_fields = ["entity", "assignee", "lead", "company", "contact"]
    readonly_fields = [*EntityScopedAdmin.readonly_fields, "completed_at", "created_by"]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
            activity_save_new(activity=obj, actor=Actor.for_user(request.user))
            return
        fields = {name: form.cleaned_data[name] for name in form.changed_data if name in form.cleaned_data}
        fields.pop("entity", None)
        for name in ("status", "occurred_at"):  # left empty: keep the current value
            if name in fields and not fields[name]:
                fields.pop(name)
        activity_update(activity=Activity.objects.get(pk=obj.pk), **fields)
        obj.refresh_from_db()


# --- Outbound email. OAuth tokens are never shown: not in fields, lists or searches. ---
from crm.email.connections import connection_revoke  # noqa: E402
from crm.models import OutboundEmail, OutboundEmailConnection  # noqa: E402

_TOKEN_FIELDS = ["access_token_encrypted", "refresh_token_encrypted"]


@admin.register(OutboundEmailConnection)
class OutboundEmailConnectionAdmin(EntityScopedAdmin):
    """Mailboxes are connected through OAuth consent at /crm/connections, never added here."""

    list_display = ["email_address", "channel", "status", "display_name", "connected_by", "entity", "last_used_at"]
    list_filter = ["channel", "status", "entity"]
    search_fields = ["email_address", "display_name"]
    ordering = ["email_address", "id"]
    list_select_related = ["entity", "connected_by"]
    exclude = _TOKEN_FIELDS
    fields = [
        "id",
        "entity",
        "channel",
        "email_address",
        "display_name",
        "status",
        "connected_by",
        "granted_scopes",
        "token_expires_at",
        "last_used_at",
        "revoked_at",
        "sync_enabled",
        "last_synced_at",
        "last_sync_error",
        "next_sync_at",
        "created_at",
        "updated_at",
    ]
    readonly_fields = [name for name in fields if name != "display_name"]
    actions = ["revoke_connections"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Disconnect (revoke) selected mailboxes")
    def revoke_connections(self, request, queryset):
        for connection in queryset:
            connection_revoke(connection=connection)
        self.message_user(request, f"Revoked {queryset.count()} connection(s).")


@admin.register(OutboundEmail)
class OutboundEmailAdmin(EntityScopedAdmin):
    """Read-only: an email's state changes only through the worker and `outbound_email_check`."""

    list_display = ["subject", "status", "channel", "from_address", "attempts", "sent_at", "lead", "created_at"]
    list_filter = ["status", "channel", "entity"]
    search_fields = ["subject", "from_address", "provider_message_id"]
    ordering = ["-created_at", "id"]
    list_select_related = ["entity", "lead"]
    exclude = ["claim_token"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields if f.name != "claim_token"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


from crm import admin_imports  # noqa: E402, F401  (the import jobs' admin)
