"""`{% custom_fields_of record as fields %}`: a record's custom fields as the detail pages show
them (labels, readable values, and for companies and contacts a link to the list filtered by the
value — the same `cf.<key>` filter as the API's)."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

from django import template

from axiomatic.models import User
from crm.models.custom_fields import CustomFieldType
from crm.selectors.custom_fields import definitions_for, object_type_of
from crm.services.custom_fields import custom_fields_represent

register = template.Library()

LIST_PATHS = {"company": "/crm/companies", "contact": "/crm/contacts"}


def _filter_url(object_type: str, entity_id, key: str, value: str) -> str:
    path = LIST_PATHS.get(object_type)
    if not path:
        return ""
    return f"{path}?{urlencode({'entityId': str(entity_id), f'cf.{key}': value})}"


@register.simple_tag(takes_context=True)
def custom_fields_of(context, record) -> list[dict]:
    object_type = object_type_of(record)
    definitions = definitions_for(entity=record.entity_id, object_type=object_type)
    values = custom_fields_represent(record, definitions)
    user_ids = [values[d.key] for d in definitions if d.type == CustomFieldType.USER and values.get(d.key)]
    users = {str(u.pk): u.display_name for u in User.objects.filter(pk__in=user_ids)} if user_ids else {}
    tz = context["request"].entity.tzinfo
    shown = []
    for definition in definitions:
        value = values.get(definition.key)
        items: list[tuple[str, str]] = []  # (text, filter url)
        if value is None:
            pass
        elif definition.type == CustomFieldType.SELECT:
            labels = {o["value"]: o["label"] for o in definition.options}
            items = [(labels.get(value, value), value)]
        elif definition.type == CustomFieldType.MULTISELECT:
            labels = {o["value"]: o["label"] for o in definition.options}
            items = [(labels.get(item, item), item) for item in value]
        elif definition.type == CustomFieldType.BOOLEAN:
            items = [("Yes" if value else "No", "true" if value else "false")]
        elif definition.type == CustomFieldType.USER:
            items = [(users.get(value, value), value)]
        elif definition.type == CustomFieldType.CURRENCY:
            items = [(f"{value['currency']} {value['amount']}", value["amount"])]
        elif definition.type == CustomFieldType.DATETIME:
            local = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(tz)
            items = [(local.strftime("%Y-%m-%d %H:%M %Z"), value)]
        else:
            items = [(str(value), str(value))]
        shown.append(
            {
                "key": definition.key,
                "label": definition.label,
                "type": definition.type,
                "empty": value is None,
                "items": [
                    {"text": text, "url": _filter_url(object_type, record.entity_id, definition.key, raw)}
                    for text, raw in items
                ],
                "href": value if definition.type == CustomFieldType.URL and value else "",
            }
        )
    return shown
