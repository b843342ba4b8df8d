"""Filter pieces shared by every resource's FilterSet (below both the API and the pages)."""

from __future__ import annotations

import uuid

import django_filters
from django import forms
from drf_spectacular.utils import extend_schema_field


class OwnerChoiceField(forms.CharField):
    """`me`, `unassigned` or a UUID; anything else is a 400."""

    def clean(self, value):
        value = super().clean(value)
        if value in ("", None):
            return None
        if value in ("me", "unassigned"):
            return value
        try:
            return uuid.UUID(value)
        except ValueError:
            raise forms.ValidationError("Must be a user UUID, 'me' or 'unassigned'.") from None


UUID_PATTERN = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
OWNER_SCHEMA = {
    "type": "string",
    "pattern": f"^(?:me|unassigned|{UUID_PATTERN})?$",
    "example": "me",
}


@extend_schema_field(OWNER_SCHEMA)
class OwnerFilter(django_filters.Filter):
    """Filters a user foreign key by UUID, `me` (the caller) or `unassigned` (null)."""

    field_class = OwnerChoiceField

    def filter(self, qs, value):
        if value is None:
            return qs
        if value == "unassigned":
            return qs.filter(**{f"{self.field_name}__isnull": True})
        if value == "me":
            value = self.parent.request.user.pk
        return qs.filter(**{self.field_name: value})


class SubstringFilter(django_filters.CharFilter):
    """Case-insensitive substring; Django escapes `%` and `_` in `icontains`, so they are literal."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("lookup_expr", "icontains")
        super().__init__(*args, **kwargs)


class StrictFilterSet(django_filters.FilterSet):
    """A FilterSet whose invalid values are 400s (django-filter raises them as ValidationError)."""
