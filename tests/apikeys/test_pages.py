"""`/settings/api-keys`: issue (secret shown once), list, revoke — over Django's test client."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from apikeys.models import ApiKey
from axiomatic.models import Membership
from tests import factories

pytestmark = pytest.mark.django_db

URL = "/settings/api-keys"


def call_api(secret: str, entity) -> int:
    return (
        Client()
        .get("/api/crm/companies", {"entityId": str(entity.pk)}, HTTP_AUTHORIZATION=f"Bearer {secret}")
        .status_code
    )


def test_page_lists_one_checkbox_per_scope(signed_in):
    html = signed_in.get(URL).content.decode()
    for scope in ("read:crm", "write:crm", "read:marketing", "write:marketing"):
        assert f'type="checkbox" name="scopes" value="{scope}"' in html
    assert 'name="name"' in html and 'name="expires_on"' in html


def test_creating_a_key_shows_the_secret_exactly_once(signed_in, entity, user):
    response = signed_in.post(URL, {"name": "Zapier", "scopes": ["read:crm"]})
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0") or "no-store" in response["Cache-Control"]
    html = response.content.decode()
    secrets = re.findall(r'value="(ak_[^"]+)"', html)
    assert len(secrets) == 1
    secret = secrets[0]
    key = ApiKey.objects.get(entity=entity, user=user)
    assert key.name == "Zapier" and key.scopes == ["read:crm"] and key.expires_at is None
    assert secret.startswith(key.prefix)
    assert call_api(secret, entity) == 200

    again = signed_in.get(URL).content.decode()
    assert secret not in again
    assert secret[len(key.prefix) :] not in again
    assert f"{key.prefix}…" in again and "Zapier" in again and "Active" in again


def test_key_without_scopes_is_refused(signed_in):
    html = signed_in.post(URL, {"name": "Nothing"}).content.decode()
    assert "Choose at least one scope." in html
    assert "ak_" not in html.replace("ak_…", "")
    assert not ApiKey.objects.exists()


def test_expiry_date_makes_the_key_expire_after_that_day(signed_in, entity):
    tomorrow = (timezone.now() + timedelta(days=1)).date()
    signed_in.post(URL, {"name": "Short", "scopes": ["read:crm", "write:crm"], "expires_on": tomorrow.isoformat()})
    key = ApiKey.objects.get()
    assert key.expires_at.date() == tomorrow + timedelta(days=1)
    assert key.scopes == ["read:crm", "write:crm"]

    html = signed_in.post(URL, {"name": "Past", "scopes": ["read:crm"], "expires_on": "2000-01-01"}).content.decode()
    assert "Choose today or a later date." in html
    assert ApiKey.objects.count() == 1


def _signed_in_member(entity) -> tuple[Client, object]:
    member = factories.make_member(entity, name="Mia Member")
    client = Client()
    client.force_login(member)
    return client, member


def test_a_member_sees_only_their_own_keys_in_the_current_entity(entity, user, other_entity):
    browser, member = _signed_in_member(entity)
    factories.make_key(entity, member, name="Mine")
    factories.make_key(entity, user, name="The owner's")
    factories.make_key(other_entity, other_entity.memberships.get().user, name="Elsewhere")
    html = browser.get(URL).content.decode()
    assert "Mine" in html
    assert "The owner" not in html and "Elsewhere" not in html


def test_an_admin_sees_every_key_of_the_entity_and_nothing_else(signed_in, entity, user, other_entity):
    colleague = factories.make_member(entity, name="Colin Colleague")
    factories.make_key(entity, user, name="Mine")
    factories.make_key(entity, colleague, name="Colleague's")
    factories.make_key(other_entity, other_entity.memberships.get().user, name="Elsewhere")
    html = signed_in.get(URL).content.decode()
    assert "Mine" in html and "Colleague" in html and "Colin Colleague" in html
    assert "Elsewhere" not in html


def test_revoking_asks_for_confirmation_then_revokes(signed_in, entity, user):
    issued = factories.make_key(entity, user, name="Old")
    assert call_api(issued.secret, entity) == 200
    confirm = signed_in.get(f"{URL}/{issued.api_key.pk}/revoke")
    assert confirm.status_code == 200 and "Revoke key" in confirm.content.decode()
    issued.api_key.refresh_from_db()
    assert issued.api_key.revoked_at is None

    response = signed_in.post(f"{URL}/{issued.api_key.pk}/revoke")
    assert response.status_code == 302
    issued.api_key.refresh_from_db()
    assert issued.api_key.revoked_at is not None
    assert call_api(issued.secret, entity) == 401
    html = signed_in.get(URL).content.decode()
    assert "Revoked" in html


def test_a_member_cannot_revoke_someone_elses_key(entity, user, other_entity):
    browser, _member = _signed_in_member(entity)
    owners = factories.make_key(entity, user)
    foreign = factories.make_key(other_entity, other_entity.memberships.get().user)
    for key in (owners.api_key, foreign.api_key):
        assert browser.post(f"{URL}/{key.pk}/revoke").status_code == 404
        key.refresh_from_db()
        assert key.revoked_at is None


def test_an_admin_revokes_a_colleagues_key_but_not_another_entitys(signed_in, entity, other_entity):
    colleague = factories.make_member(entity)
    theirs = factories.make_key(entity, colleague)
    foreign = factories.make_key(other_entity, other_entity.memberships.get().user)
    assert signed_in.post(f"{URL}/{theirs.api_key.pk}/revoke").status_code == 302
    theirs.api_key.refresh_from_db()
    assert theirs.api_key.revoked_at is not None
    assert call_api(theirs.secret, entity) == 401
    assert signed_in.post(f"{URL}/{foreign.api_key.pk}/revoke").status_code == 404
    foreign.api_key.refresh_from_db()
    assert foreign.api_key.revoked_at is None


def test_revoke_needs_csrf(user, entity):
    issued = factories.make_key(entity, user)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(f"{URL}/{issued.api_key.pk}/revoke").status_code == 403
    issued.api_key.refresh_from_db()
    assert issued.api_key.revoked_at is None


def test_key_is_issued_in_the_entity_named_by_the_page(signed_in, user, entity, other_entity):
    Membership.objects.create(user=user, entity=other_entity)
    signed_in.post(f"{URL}?entityId={other_entity.pk}", {"name": "There", "scopes": ["read:crm"]})
    assert ApiKey.objects.get().entity_id == other_entity.pk


def test_an_expiry_at_the_end_of_the_calendar_is_refused_not_a_500(signed_in):
    response = signed_in.post(URL, {"name": "Forever", "scopes": ["read:crm"], "expires_on": "9999-12-31"})
    assert response.status_code == 200
    assert "or no expiry" in response.content.decode()
    assert not ApiKey.objects.exists()
