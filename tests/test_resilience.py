"""What the API does when Redis (cache, rate limits, idempotency store) is unreachable.

The "dead" Redis is a real closed port on 127.0.0.1, not a mock.
"""

from __future__ import annotations

import pytest

from crm.models import Company
from tests.helpers import assert_error

DEAD_REDIS = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",
        "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
    }
}


@pytest.fixture
def dead_redis(settings):
    settings.CACHES = DEAD_REDIS


def test_rate_limit_lets_requests_through_when_its_cache_is_down(api, dead_redis):
    response = api.get("/companies")
    assert response.status_code == 200
    assert response.json()["companies"] == []


def test_post_without_idempotency_key_works_when_the_cache_is_down(api, dead_redis):
    assert api.post("/companies", {"name": "Acme"}).status_code == 201


def test_idempotent_post_is_refused_with_503_not_run_when_the_store_is_down(api, dead_redis):
    response = api.post("/companies", {"name": "Acme"}, headers={"Idempotency-Key": "k-1"})
    body = assert_error(response, 503)
    assert "Idempotency-Key" in body["error"]
    assert not Company.objects.filter(name="Acme").exists()
