"""`/settings/custom-fields`: the entity's custom fields, for admins and owners to define, relabel,
reorder and delete (with a confirmation saying how many records hold a value). Every write is a
call into `crm.services.custom_fields`, whose refusals show on the form as the API words them."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_http_methods, require_POST

from axiomatic.forms import save_through_service
from axiomatic.pages import entity_page
from axiomatic.roles import is_admin
from crm.models import CustomField
from crm.models.custom_fields import CustomFieldObjectType, CustomFieldType
from crm.selectors.custom_fields import custom_field_list
from crm.services.custom_fields import (
    custom_field_create,
    custom_field_delete,
    custom_field_holders,
    custom_field_update,
)

PAGE = "/settings/custom-fields"
OPTIONS_HELP = "select and multiselect: one option a line, as value or value|Label (e.g. emea|EMEA)."


def _options_of(text: str) -> list[dict]:
    options = []
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        value, _, label = line.partition("|")
        options.append({"value": value.strip(), "label": (label or value).strip()})
    return options


def _options_text(options: list[dict]) -> str:
    return "\n".join(f"{o['value']}|{o['label']}" for o in options)


class CustomFieldEditForm(forms.Form):
    label = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    required = forms.BooleanField(required=False, help_text="Given on create, never cleared (existing records stay).")
    options = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 4}), help_text=OPTIONS_HELP)


class CustomFieldCreateForm(CustomFieldEditForm):
    object_type = forms.ChoiceField(choices=CustomFieldObjectType.choices, label="Object")
    key = forms.CharField(max_length=40, help_text="a-z, 0-9 and _, starting with a letter; never changes.")
    type = forms.ChoiceField(choices=CustomFieldType.choices)
    unique = forms.BooleanField(required=False, help_text="text, number, email, url: no two records alike.")
    field_order = ["object_type", "key", "label", "type", "options", "required", "unique", "description"]


def _require_admin(request) -> None:
    if not is_admin(request.membership):
        raise PermissionDenied("You need the admin role to change custom fields.")


def _redirect(request) -> HttpResponseRedirect:
    return HttpResponseRedirect(f"{PAGE}?entityId={request.entity.pk}")


@require_http_methods(["GET", "POST"])
@entity_page
def custom_fields_page(request):
    form = CustomFieldCreateForm(request.POST or None)
    if request.method == "POST":
        _require_admin(request)
        if form.is_valid():
            data = form.cleaned_data
            created = save_through_service(
                form,
                lambda: custom_field_create(
                    entity=request.entity,
                    object_type=data["object_type"],
                    key=data["key"],
                    label=data["label"],
                    type=data["type"],
                    options=_options_of(data["options"]),
                    required=data["required"],
                    unique=data["unique"],
                    description=data["description"],
                ),
            )
            if created is not None:
                messages.success(request, f"Added the {created.object_type} field {created.label}.")
                return _redirect(request)
    groups = [
        (label, [f for f in custom_field_list(entity=request.entity) if f.object_type == value])
        for value, label in CustomFieldObjectType.choices
    ]
    context = {"groups": groups, "form": form, "can_manage": is_admin(request.membership)}
    status = 400 if request.method == "POST" else 200
    return render(request, "settings/custom_fields.html", context, status=status)


def _field_or_404(request, field_id) -> CustomField:
    return get_object_or_404(CustomField.objects.for_entity(request.entity), pk=field_id)


@require_http_methods(["GET", "POST"])
@entity_page
def custom_field_edit(request, field_id):
    _require_admin(request)
    field = _field_or_404(request, field_id)
    initial = {
        "label": field.label,
        "description": field.description,
        "required": field.required,
        "options": _options_text(field.options),
    }
    form = CustomFieldEditForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        changes = {name: form.cleaned_data[name] for name in form.changed_data}
        if "options" in changes:
            changes["options"] = _options_of(changes["options"])
        saved = save_through_service(form, lambda: custom_field_update(definition=field, **changes))
        if saved is not None:
            messages.success(request, f"Saved {saved.label}.")
            return _redirect(request)
    status = 400 if request.method == "POST" else 200
    return render(request, "settings/custom_field_edit.html", {"form": form, "field": field}, status=status)


@require_POST
@entity_page
def custom_field_move(request, field_id):
    _require_admin(request)
    field = _field_or_404(request, field_id)
    step = -1 if request.POST.get("direction") == "up" else 1
    custom_field_update(definition=field, sort_order=max(0, field.sort_order + step))
    return _redirect(request)


@require_http_methods(["GET", "POST"])
@entity_page
def custom_field_remove(request, field_id):
    _require_admin(request)
    field = _field_or_404(request, field_id)
    if request.method == "POST":
        custom_field_delete(definition=field)
        messages.success(request, f"Deleted {field.label}.")
        return _redirect(request)
    held = custom_field_holders(field)
    return render(request, "settings/custom_field_delete.html", {"field": field, "held": held})
