"""Fixtures shared by every test: entities, users, and an API client that sends a real `ak_` key."""

from __future__ import annotations

import ipaddress

import pytest
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.test import Client

from apikeys.models import SCOPES
from tests import factories, rls_support
from tests.helpers import ApiClient

# Row-level security: test code works across entities (bypass on), requests run as the app does.
rls_support.install()

# Minutes-long tests start first, so that on several workers the rest of the suite runs beside
# them instead of after them.
LONG_RUNNING = ("tests/test_schemathesis.py", "tests/test_bench.py", "tests/test_replica.py")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: not item.nodeid.startswith(LONG_RUNNING))


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


@pytest.fixture(autouse=True)
def _webhooks_stay_on_loopback(monkeypatch):
    """No test sends a webhook anywhere but a loopback address: tests that check URLs mock the
    resolution (`socket.getaddrinfo`), and a connection to any other address fails the attempt."""
    from webhooks import net

    original = net._pool

    def loopback_only(target, address, timeout):
        if not ipaddress.ip_address(address).is_loopback:
            raise AssertionError(f"a test tried to send a webhook to {address}")
        return original(target, address, timeout)

    loopback_only.__wrapped__ = original
    monkeypatch.setattr(net, "_pool", loopback_only)


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
def scoped_staff(entity, other_entity):
    """Staff who is not a superuser, with every model permission: admin of `entity`, a mere member
    of `other_entity` (so the admin must keep them out of it)."""
    from django.contrib.auth.models import Permission

    from axiomatic.models import Membership

    person = factories.make_user(name="Stef Staff")
    person.is_staff = True
    person.save(update_fields=["is_staff"])
    person.user_permissions.set(Permission.objects.all())
    Membership.objects.create(user=person, entity=entity, role=Membership.Role.ADMIN)
    Membership.objects.create(user=person, entity=other_entity, role=Membership.Role.MEMBER)
    return person


@pytest.fixture
def scoped_staff_client(scoped_staff):
    client = Client()
    client.force_login(scoped_staff)
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
