"""Where each app's API is mounted, as the apps register it: the core names no app.

An app says in its `AppConfig.ready()` which path prefix its API answers under, which scope
family guards it (`read:<family>` / `write:<family>` on an API key) and whether POSTs there take
`Idempotency-Key`. The base viewset's scope check, the idempotency middleware and the OpenAPI
schema read it here instead of hard-coding `/api/crm/` or `crm`.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True)
class ApiMount:
    """One app's API: `prefix` (e.g. `/api/crm/`), its scope family, and whether a POST under it
    is remembered by `Idempotency-Key`. `tag_prefix` names its operations' tags in the schema
    (`marketing-` makes `/api/marketing/lists` the `marketing-lists` tag; empty keeps `leads`)."""

    prefix: str
    scope_family: str
    idempotent_posts: bool = False
    tag_prefix: str = ""


_mounts: dict[str, ApiMount] = {}


def register_api(*, prefix: str, scope_family: str, idempotent_posts: bool = False, tag_prefix: str = "") -> None:
    """Register an app's API mount (idempotent: `ready()` may run more than once in tests)."""
    if not (prefix.startswith("/api/") and prefix.endswith("/")):
        raise ImproperlyConfigured(f"An API prefix starts with /api/ and ends with a slash, not {prefix!r}.")
    mount = ApiMount(prefix, scope_family, idempotent_posts, tag_prefix)
    if _mounts.get(prefix, mount) != mount:
        raise ImproperlyConfigured(f"{prefix} is registered twice, differently.")
    _mounts[prefix] = mount


def api_mount(path: str) -> ApiMount | None:
    """The mount whose prefix `path` starts with (the longest, should two nest), or None."""
    matches = [mount for prefix, mount in _mounts.items() if path.startswith(prefix)]
    return max(matches, key=lambda mount: len(mount.prefix), default=None)


def api_mounts() -> list[ApiMount]:
    return list(_mounts.values())


def takes_idempotency_key(path: str) -> bool:
    """Whether a POST to `path` is remembered under its `Idempotency-Key`."""
    mount = api_mount(path)
    return mount is not None and mount.idempotent_posts


def scope_family_of(path: str) -> str:
    """The scope family guarding `path`; a route outside every registered mount is a wiring error."""
    mount = api_mount(path)
    if mount is None:
        raise ImproperlyConfigured(f"No app registered an API mount for {path}.")
    return mount.scope_family
