"""The API's representation of a domain object, for services that must record it.

Timeline events (and the change feed) store an object "exactly as its GET returns it". The
services that write them may not import the API layer (see the import contracts), so the API
registers one function per model here when the app starts, and services call `represent()`.
One definition of each object's shape — the serializer — serves the responses and the records.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import models

Representer = Callable[[models.Model], dict[str, Any]]
ManyRepresenter = Callable[[list[models.Model]], list[dict[str, Any]]]

_representers: dict[type[models.Model], Representer] = {}
_many_representers: dict[type[models.Model], ManyRepresenter] = {}


def register_representation(
    model: type[models.Model], representer: Representer, *, many: ManyRepresenter | None = None
) -> None:
    """Declare how the API shows `model` (called from an app's `AppConfig.ready`); `many`, when
    given, shows a batch at once (the lists' fast path) with the same result per row."""
    _representers[model] = representer
    if many is not None:
        _many_representers[model] = many


def represent_many(instances: list[models.Model]) -> list[dict[str, Any]]:
    """Instances of one model as the API shows them (bulk writes record thousands at once)."""
    if not instances:
        return []
    many = _many_representers.get(type(instances[0]))
    return many(instances) if many is not None else [represent(instance) for instance in instances]


def represent(instance: models.Model) -> dict[str, Any]:
    """`instance` as the API shows it: plain JSON-ready values, camelCase keys."""
    try:
        representer = _representers[type(instance)]
    except KeyError:
        raise LookupError(f"No API representation is registered for {type(instance).__name__}.") from None
    return representer(instance)
