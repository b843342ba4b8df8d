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

_representers: dict[type[models.Model], Representer] = {}


def register_representation(model: type[models.Model], representer: Representer) -> None:
    """Declare how the API shows `model` (called from an app's `AppConfig.ready`)."""
    _representers[model] = representer


def represent(instance: models.Model) -> dict[str, Any]:
    """`instance` as the API shows it: plain JSON-ready values, camelCase keys."""
    try:
        representer = _representers[type(instance)]
    except KeyError:
        raise LookupError(f"No API representation is registered for {type(instance).__name__}.") from None
    return representer(instance)
