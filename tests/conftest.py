"""Fixtures shared by every test: entities, users, and an API client that sends a real `ak_` key."""

from __future__ import annotations

import pytest
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.test import Client

from apikeys.models import SCOPES
from tests import factories, rls_support
from tests.helpers import ApiClient

# Row-level security: test code works across entities (bypass on), requests run as the app does.
rls_support.install()


@pytest.fixture(autouse=True)
def _clear_cache():
    """Start each test with no cache entries of this process (rate-limit counters, idempotency keys).

    Only keys under this process's KEY_PREFIX go: `cache.clear()` is FLUSHDB on Redis, which would
    also wipe the counters of tests running at the same time in other xdist workers.
    """
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        client = backend._cache.get_client(write=True)
        keys = list(client.scan_iter(match=f"{backend.key_prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    else:
        backend.clear()
    yield


@pytest.fixture
def user(db):
    return factories.make_user(name="Alice Owner")


@pytest.fixture
def entity(user):
    return factories.make_entity(name="Alice Co", owner=user)


@pytest.fixture
def other_user(db):
    return factories.make_user(name="Bob Other")


@pytest.fixture
def other_entity(other_user):
    return factories.make_entity(name="Bob Co", owner=other_user)


@pytest.fixture
def staff_user(db):
    return factories.make_staff()


@pytest.fixture
def staff_client(staff_user):
    """A client signed in as a staff superuser, for the admin."""
    client = Client()
    client.force_login(staff_user)
    return client


@pytest.fixture
def signed_in(client, user, entity):
    """The test client signed in as `user` (a member of `entity`), for the browser pages."""
    client.force_login(user)
    return client


@pytest.fixture
def make_api(client, entity, user):
    """`make_api(scopes=(...), entity=..., user=...)` → an ApiClient with a fresh key."""

    def build(*, scopes=SCOPES, entity=entity, user=user, expires_at=None, prefix="/api/crm"):
        issued = factories.make_key(entity, user, scopes=scopes, expires_at=expires_at)
        return ApiClient(
            Client(), secret=issued.secret, entity=entity, user=user, api_key=issued.api_key, prefix=prefix
        )

    return build


@pytest.fixture
def api(make_api):
    """A client with every scope, for the caller's own entity."""
    return make_api()


@pytest.fixture
def other_api(make_api, other_entity, other_user):
    return make_api(entity=other_entity, user=other_user)
