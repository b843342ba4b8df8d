"""Uniqueness rules that hold under concurrent writers, answered as a 409 naming the existing row.

The pattern is always the same: check for a row that already holds the value (a `Conflict` with
its id), save inside a savepoint, and if the database's unique constraint still trips — another
request won the race between the check and the insert — check again, so the caller gets the same
`Conflict` it would have got a moment later instead of an `IntegrityError`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.db import IntegrityError, models, transaction

from axiomatic import errors

ModelT = TypeVar("ModelT", bound=models.Model)


def ensure_unique(taken: models.QuerySet, *, message: str, field: str | None = None) -> None:
    """Raise `Conflict(message, existing_id=...)` when `taken` (rows holding the value) is not empty."""
    existing_id = taken.values_list("pk", flat=True).first()
    if existing_id is not None:
        raise errors.Conflict(message, existing_id=existing_id, field=field)


def save_unique(instance: ModelT, *, recheck: Callable[[], None], **save_kwargs) -> ModelT:
    """Save `instance` in a savepoint; on a unique violation run `recheck` (which raises the
    `Conflict`) and re-raise the `IntegrityError` only if the conflict is not a uniqueness one."""
    try:
        with transaction.atomic():
            instance.save(**save_kwargs)
    except IntegrityError:
        recheck()
        raise
    return instance
