"""The domain errors every service and selector raises.

Services know nothing of HTTP: they say *what* rule broke (not found, conflict with an existing
row, invalid input, forbidden), in one readable sentence, optionally naming the input field.
Each front end translates them once: the API exception handler turns them into the `{"error"}`
envelope with the matching status, and the admin and the pages show them as form errors
(`axiomatic.forms.add_domain_error`). So a rule written once reads the same everywhere.

Field names are the services' keyword names in snake_case (`company_id`, `end_date`); the API
shows them in camelCase (`companyId`), forms map them onto their own fields.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar
from uuid import UUID

from django.core.exceptions import ValidationError

T = TypeVar("T")


class DomainError(Exception):
    """Base class: a rule of the domain refused the operation."""

    default_message = "The operation is not allowed."

    def __init__(self, message: str | None = None, *, field: str | None = None) -> None:
        self.message = message or self.default_message
        self.field = field
        super().__init__(self.message)

    @property
    def field_errors(self) -> dict[str, list[str]]:
        """Messages per input field (empty when the rule concerns the request as a whole)."""
        return {self.field: [self.message]} if self.field else {}


class NotFound(DomainError):
    """The row does not exist in the caller's entity (another entity's row reads the same);
    `merged_into` names the record it was merged into, when that is why it is gone."""

    default_message = "Not found."

    def __init__(self, message: str | None = None, *, field: str | None = None, merged_into=None) -> None:
        super().__init__(message, field=field)
        self.merged_into = merged_into


class Conflict(DomainError):
    """A uniqueness rule or the current state refuses the write; `existing_id` names the cause."""

    default_message = "The request conflicts with the current state."

    def __init__(self, message: str | None = None, *, existing_id: UUID | str | None = None, field=None) -> None:
        super().__init__(message, field=field)
        self.existing_id = existing_id


class Invalid(DomainError):
    """The input breaks a rule; `field` (or `fields`, several at once) says which input."""

    default_message = "Invalid input."

    def __init__(
        self, message: str | None = None, *, field: str | None = None, fields: dict[str, list[str]] | None = None
    ) -> None:
        super().__init__(message, field=field)
        self._fields = fields

    @property
    def field_errors(self) -> dict[str, list[str]]:
        return self._fields if self._fields is not None else super().field_errors


class Forbidden(DomainError):
    """The caller may not do this (a role or ownership rule)."""

    default_message = "You may not do this."


class LimitExceeded(DomainError):
    """A quota is used up for now; `retry_after` says in how many seconds it frees up."""

    default_message = "A limit was reached; try again later."

    def __init__(self, message: str | None = None, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def field_rule(rule: Callable[..., T], *args, **kwargs) -> T:
    """Run a service's field rule (a normaliser that raises `Invalid`) inside a form's or a
    serializer's field validation, where the refusal must be a field error: Django forms and DRF
    serializers both turn Django's `ValidationError` into one, with the service's own sentence."""
    try:
        return rule(*args, **kwargs)
    except Invalid as error:
        raise ValidationError(error.message) from None
