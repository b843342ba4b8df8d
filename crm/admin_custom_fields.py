"""Staff admin for custom fields: the definitions, and the values on the company, contact and lead
change forms. Every write goes through `crm.services.custom_fields` (and the record services), so
the admin refuses exactly what the API refuses, with the same sentences."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db import router, transaction

from axiomatic import errors
from axiomatic.admin import EntityScopedAdmin
from crm.models import CustomField
from crm.selectors.custom_fields import object_type_of
from crm.services.custom_fields import (
    custom_field_create,
    custom_field_delete,
    custom_field_holders,
    custom_field_update,
    custom_fields_apply,
    custom_fields_changes,
    custom_fields_represent,
)

CUSTOM_FIELDS_HELP = (
    'The record\'s custom fields as the API shows them: {"key": value, ...}. Null clears a value; '
    "values are checked as the API checks them."
)


class CustomFieldValuesFormMixin(forms.Form):
    """For the company, contact and lead admin forms: `custom_fields` edited as the API's
    `customFields` object, checked by the one validator; the save hands only the changed keys to the
    record's service (so a field made required later does not block editing other things)."""

    custom_fields = forms.JSONField(
        required=False,
        label="Custom fields",
        help_text=CUSTOM_FIELDS_HELP,
        widget=forms.Textarea(attrs={"rows": 6, "cols": 80}),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        instance = self.instance
        current = custom_fields_represent(instance) if not instance._state.adding else {}
        self._custom_before = current
        self.initial["custom_fields"] = current

    def clean_custom_fields(self):
        value = self.cleaned_data.get("custom_fields")
        if value in (None, ""):
            value = {}
        if not isinstance(value, dict):
            raise forms.ValidationError('Enter an object such as {"key": "value"}.')
        changed = {key: item for key, item in value.items() if self._custom_before.get(key, ...) != item}
        changed.update({key: None for key in self._custom_before if key not in value and self._custom_before[key]})
        adding = self.instance._state.adding
        entity = getattr(self.cleaned_data.get("entity"), "pk", None) if adding else self.instance.entity_id
        if entity is None:
            return changed
        try:
            custom_fields_changes(
                entity=entity,
                object_type=object_type_of(self._meta.model),
                values=changed,
                partial=not adding,
            )
        except errors.Invalid as invalid:
            raise forms.ValidationError(
                [f"{name}: {message}" for name, messages_ in invalid.field_errors.items() for message in messages_]
                or [invalid.message]
            ) from None
        return changed


def lead_custom_fields_apply(lead, values) -> None:
    """A new lead from the admin's add form: its custom fields set (required ones checked) before
    `lead_save_new`, which the admin shares with the API's create."""
    changes = custom_fields_changes(entity=lead.entity_id, object_type="lead", values=values or {}, partial=False)
    custom_fields_apply(lead, changes, fresh=False)


class CustomFieldAdminForm(forms.ModelForm):
    sort_order = forms.IntegerField(min_value=0, required=False, help_text="0-based position; default last.")
    options = forms.JSONField(
        required=False,
        help_text='select and multiselect: [{"value": "emea", "label": "EMEA"}, ...]',
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
    )

    class Meta:
        model = CustomField
        fields = [
            "entity",
            "object_type",
            "key",
            "label",
            "type",
            "options",
            "required",
            "unique",
            "description",
            "sort_order",
        ]


@admin.register(CustomField)
class CustomFieldAdmin(EntityScopedAdmin):
    """Definitions, saved and deleted through the custom field service (the key rules, the limit,
    the unique index, option removal refused while in use, values hidden on delete)."""

    form = CustomFieldAdminForm
    list_display = ["key", "label", "object_type", "type", "required", "unique", "sort_order", "entity"]
    list_filter = ["object_type", "type", "entity"]
    search_fields = ["key", "label"]
    ordering = ["entity", "object_type", "sort_order", "id"]

    def get_readonly_fields(self, request, obj=None):
        readonly = super().get_readonly_fields(request, obj)
        return [*readonly, "object_type", "key", "type", "unique"] if obj is not None else readonly

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if not change:
            created = custom_field_create(
                entity=data["entity"],
                object_type=data["object_type"],
                key=data["key"],
                label=data["label"],
                type=data["type"],
                options=data.get("options") or [],
                required=data.get("required", False),
                unique=data.get("unique", False),
                description=data.get("description", ""),
                sort_order=data.get("sort_order"),
            )
            obj.pk, obj._state.adding = created.pk, False
            return
        editable = ("label", "description", "required", "options", "sort_order")
        fields = {name: data[name] for name in form.changed_data if name in editable}
        custom_field_update(definition=CustomField.objects.get(pk=obj.pk), **fields)
        obj.refresh_from_db()

    def delete_model(self, request, obj):
        held = custom_field_holders(obj)
        custom_field_delete(definition=obj)
        self.message_user(request, f"{obj.key}: the values of {held} record(s) are gone with it.", messages.INFO)

    def delete_queryset(self, request, queryset):
        for definition in list(queryset):
            with transaction.atomic(using=router.db_for_write(CustomField)):
                custom_field_delete(definition=definition)
