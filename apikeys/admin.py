"""Admin for API keys: issuing goes through the service and shows the secret exactly once.

The secret appears only in the response to the POST that created the key (a page of its own,
marked no-store), never in a message: messages travel in a cookie (or the session) and would
carry the secret out of this one response.
"""

from django import forms
from django.contrib import admin
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers

from apikeys.models import SCOPE_CHOICES, ApiKey
from apikeys.services import api_key_issue, api_key_revoke
from axiomatic.admin import StaffScopeMixin
from axiomatic.models import User


class ApiKeyAddForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(choices=SCOPE_CHOICES, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = ApiKey
        fields = ["entity", "user", "name", "scopes", "expires_at"]

    def clean(self):
        data = super().clean()
        entity, user = data.get("entity"), data.get("user")
        if entity and user and not user.memberships.filter(entity=entity).exists():
            raise forms.ValidationError("The user must be a member of the entity.")
        return data


@admin.register(ApiKey)
class ApiKeyAdmin(StaffScopeMixin, admin.ModelAdmin):
    """Keys of the administered entities (list, revoke: as admins do on /settings/api-keys).

    A key acts as its user, so staff who are not superusers issue keys only for themselves, in an
    entity they administer; only superusers issue a key for someone else.
    """

    list_display = ["name", "prefix", "entity", "user", "status", "created_at", "last_used_at", "expires_at"]
    list_filter = ["revoked_at", "expires_at", "entity"]
    search_fields = ["name", "prefix", "user__email", "entity__name"]
    list_select_related = ["entity", "user"]
    autocomplete_fields = ["entity", "user"]
    actions = ["revoke_selected"]
    readonly_fields = ["prefix", "scopes", "last_used_at", "created_at", "revoked_at"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ApiKeyAddForm
        return super().get_form(request, obj, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else [*self.readonly_fields, "entity", "user"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "user" and not request.user.is_superuser:
            kwargs["queryset"] = User.objects.filter(pk=request.user.pk)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        issued = api_key_issue(
            entity=obj.entity,
            user=obj.user,
            name=obj.name,
            scopes=form.cleaned_data["scopes"],
            expires_at=obj.expires_at,
        )
        obj.pk = issued.api_key.pk
        obj._state.adding = False
        request._issued_api_key = issued

    def response_add(self, request, obj, post_url_continue=None):
        issued = getattr(request, "_issued_api_key", None)
        if issued is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "API key issued",
            "api_key": issued.api_key,
            "secret": issued.secret,
        }
        response = TemplateResponse(request, "admin/apikeys/issued_key.html", context)
        add_never_cache_headers(response)
        return response

    @admin.action(description="Revoke selected API keys")
    def revoke_selected(self, request, queryset):
        for api_key in queryset:
            api_key_revoke(api_key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")
