"""Custom fields on the sales pages' forms: one input per field, of the right kind for its type.

The inputs only shape what the browser sends into the API's value (`"true"` → true, a local
date and time → ISO 8601 with the entity's offset, currency + amount → `{currency, amount}`); the
custom field service validates it like any API value and its refusals land on the field's input
(`customFields.<key>` → `cf_<key>`, see `axiomatic.forms.form_field_for`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import forms

from axiomatic.currencies import ISO_4217
from axiomatic.models import Entity, User
from crm.models.custom_fields import CustomField, CustomFieldType
from crm.selectors.custom_fields import definitions_for
from crm.services.custom_fields import custom_fields_represent

PREFIX = "cf_"
_DATETIME_INPUT = "%Y-%m-%dT%H:%M"


class CurrencyAmountWidget(forms.MultiWidget):
    def __init__(self, attrs=None):
        choices = [("", "—"), *((code, code) for code in sorted(ISO_4217))]
        super().__init__(
            [forms.Select(choices=choices), forms.TextInput(attrs={"inputmode": "decimal", "placeholder": "0.00"})],
            attrs,
        )

    def decompress(self, value):
        if isinstance(value, dict):
            return [value.get("currency", ""), value.get("amount", "")]
        return ["", ""]


class CurrencyAmountField(forms.MultiValueField):
    widget = CurrencyAmountWidget

    def __init__(self, **kwargs):
        super().__init__(
            fields=(forms.CharField(required=False), forms.CharField(required=False)),
            require_all_fields=False,
            **kwargs,
        )

    def compress(self, data_list):
        currency, amount = (data_list or ["", ""]) + [""] * (2 - len(data_list or []))
        if not currency and not amount:
            return None
        return {"currency": currency, "amount": amount}


def _form_field(definition: CustomField, entity: Entity) -> forms.Field:
    common = {"required": False, "label": definition.label, "help_text": definition.description}
    kind = definition.type
    if kind == CustomFieldType.TEXT:
        return forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), strip=False, **common)
    if kind == CustomFieldType.NUMBER:
        return forms.CharField(widget=forms.TextInput(attrs={"inputmode": "decimal"}), **common)
    if kind == CustomFieldType.DATE:
        return forms.CharField(widget=forms.DateInput(attrs={"type": "date"}), **common)
    if kind == CustomFieldType.DATETIME:
        return forms.CharField(widget=forms.DateTimeInput(attrs={"type": "datetime-local"}), **common)
    if kind == CustomFieldType.BOOLEAN:
        return forms.ChoiceField(choices=[("", "—"), ("true", "Yes"), ("false", "No")], **common)
    if kind == CustomFieldType.SELECT:
        return forms.ChoiceField(choices=[("", "—"), *((o["value"], o["label"]) for o in definition.options)], **common)
    if kind == CustomFieldType.MULTISELECT:
        return forms.MultipleChoiceField(
            choices=[(o["value"], o["label"]) for o in definition.options],
            widget=forms.CheckboxSelectMultiple,
            **common,
        )
    if kind == CustomFieldType.URL:
        return forms.CharField(widget=forms.URLInput(), **common)
    if kind == CustomFieldType.EMAIL:
        return forms.CharField(widget=forms.EmailInput(), **common)
    if kind == CustomFieldType.USER:
        members = User.objects.filter(memberships__entity=entity).order_by("name", "email", "id")
        return forms.ChoiceField(choices=[("", "Nobody"), *((str(u.pk), u.display_name) for u in members)], **common)
    return CurrencyAmountField(**common)


class CustomFieldsFormMixin:
    """Adds `cf_<key>` inputs for the entity's fields of `custom_object_type` to a page's form."""

    custom_object_type = ""

    def add_custom_fields(self) -> None:
        self.custom_definitions = definitions_for(entity=self.entity, object_type=self.custom_object_type)
        for definition in self.custom_definitions:
            self.fields[PREFIX + definition.key] = _form_field(definition, self.entity)

    @classmethod
    def custom_initial(cls, record) -> dict:
        """The inputs' initial values from the record's API values."""
        initial = {}
        for key, value in custom_fields_represent(record).items():
            if value is None:
                continue
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, str) and len(value) == 27 and value.endswith("Z") and "T" in value:
                value = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(record.entity.tzinfo)
                value = value.strftime(_DATETIME_INPUT)
            initial[PREFIX + key] = value
        return initial

    def _api_value(self, definition: CustomField, value: Any) -> Any:
        if value in ("", None, []):
            return None
        if definition.type == CustomFieldType.BOOLEAN:
            return value == "true"
        if definition.type == CustomFieldType.DATETIME and "T" in value and value[-1] != "Z" and "+" not in value:
            try:
                local = datetime.strptime(value[:16], _DATETIME_INPUT).replace(tzinfo=self.entity.tzinfo)
            except ValueError:
                return value  # the service refuses it with the API's sentence
            return local.isoformat()
        return value

    def custom_fields_value(self, *, changed_only: bool) -> dict | None:
        """The API's `customFields` for the service: every input on create, the changed ones on edit."""
        values = {}
        for definition in self.custom_definitions:
            name = PREFIX + definition.key
            if name not in self.cleaned_data or (changed_only and name not in self.changed_data):
                continue
            values[definition.key] = self._api_value(definition, self.cleaned_data[name])
        if changed_only and not values:
            return None
        return values

    def service_fields_with_custom(self, fields: dict, *, changed_only: bool) -> dict:
        fields = {name: value for name, value in fields.items() if not name.startswith(PREFIX)}
        custom = self.custom_fields_value(changed_only=changed_only)
        if custom is not None:
            fields["custom_fields"] = custom
        return fields
