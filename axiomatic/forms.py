"""Showing domain errors on Django forms (the admin and the pages).

A service raises `axiomatic.errors.DomainError` naming its input by keyword (`company_id`,
`end_date`); a form shows the same sentence on its own field (`company`, `end_date`), or above the
form when no field matches. This is the forms' one translation of the services' rules, as the
API exception handler is the API's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django import forms
from django.db import transaction

from axiomatic.errors import Conflict, DomainError

T = TypeVar("T")


def form_field_for(form: forms.BaseForm, name: str) -> str | None:
    """The form field a service's keyword refers to: itself, or the relation of an `*_id`."""
    candidates = [name]
    if name.startswith("customFields."):  # a custom field's value: its `cf_<key>` input
        candidates.append("cf_" + name.split(".", 1)[1])
    if name.endswith("_ids"):
        candidates.append(name[:-4] + "s")
    if name.endswith("_id"):
        candidates.append(name[: -len("_id")])
    return next((candidate for candidate in candidates if candidate in form.fields), None)


def add_domain_error(form: forms.BaseForm, error: DomainError) -> None:
    """Attach the error to the fields it names (or to the form as a whole)."""
    field_errors = error.field_errors
    if not field_errors:
        form.add_error(None, error.message)
        return
    for name, messages in field_errors.items():
        target = form_field_for(form, name)
        for message in messages:
            form.add_error(target, message)


def save_through_service(form: forms.BaseForm, write: Callable[[], T]) -> T | None:
    """Run a service write for a page's form; on a refusal roll it back, put the service's
    sentence on the form and return None (a conflict's existing row goes in `form.conflict_id`)."""
    try:
        with transaction.atomic():
            return write()
    except DomainError as error:
        add_domain_error(form, error)
        if isinstance(error, Conflict) and error.existing_id:
            form.conflict_id = error.existing_id
        return None
