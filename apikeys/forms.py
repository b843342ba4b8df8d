"""The settings page's form for issuing an API key."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from django import forms
from django.utils import timezone

from apikeys.models import SCOPE_CHOICES

MAX_EXPIRY_YEAR = 9000  # the expiry instant is the next midnight: keep it inside datetime's range


class ApiKeyCreateForm(forms.Form):
    """Name, scopes (one checkbox each, value = the scope) and an optional last valid day.

    The expiry is a date in the entity's time zone: the key works through the end of that day.
    """

    name = forms.CharField(max_length=100, strip=True)
    scopes = forms.MultipleChoiceField(
        choices=SCOPE_CHOICES,
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one scope."},
    )
    expires_on = forms.DateField(
        required=False,
        label="Valid through (optional)",
        widget=forms.DateInput(attrs={"type": "date"}),
    )

    def __init__(self, *args, entity, **kwargs):
        super().__init__(*args, **kwargs)
        self.entity = entity

    def _today(self):
        return timezone.now().astimezone(self.entity.tzinfo).date()

    def clean_expires_on(self):
        value = self.cleaned_data.get("expires_on")
        if value is not None and value < self._today():
            raise forms.ValidationError("Choose today or a later date.")
        if value is not None and value.year > MAX_EXPIRY_YEAR:
            raise forms.ValidationError(f"Choose a date before {MAX_EXPIRY_YEAR + 1}, or no expiry.")
        return value

    def expires_at(self) -> datetime | None:
        """The instant the key stops working: midnight after the chosen day, entity time."""
        day = self.cleaned_data.get("expires_on")
        if day is None:
            return None
        return datetime.combine(day + timedelta(days=1), time.min, tzinfo=self.entity.tzinfo)
