"""The API-key admin: keys are issued through the service, the secret is shown exactly once."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from apikeys.models import ApiKey
from tests import factories
from tests.helpers import ApiClient, assert_error

pytestmark = pytest.mark.django_db

SECRET = re.compile(r"ak_[A-Za-z0-9_\-]+")


def add_form(entity, user, **changes) -> dict:
    data = {
        "entity": str(entity.pk),
        "user": str(user.pk),
        "name": "Admin-issued",
        "scopes": ["read:crm", "write:crm"],
        "expires_at_0": "",
        "expires_at_1": "",
    }
    data.update(changes)
    return data


def api_for(secret: str, entity) -> ApiClient:
    return ApiClient(Client(), secret=secret, entity=entity, user=None)


def test_add_issues_a_key_and_shows_the_secret_once(staff_client, entity, user):
    # The secret is on the page answering the POST itself, not in a message (messages travel in
    # a cookie or the session and would carry it out of this one response).
    response = staff_client.post("/admin/apikeys/apikey/add/", add_form(entity, user))
    assert response.status_code == 200, response.content.decode()[:2000]
    assert "no-store" in response["Cache-Control"]

    api_key = ApiKey.objects.get(name="Admin-issued")
    assert (api_key.entity, api_key.user, api_key.scopes) == (entity, user, ["read:crm", "write:crm"])
    shown = [found for found in SECRET.findall(response.content.decode()) if len(found) > ApiKey.PREFIX_LENGTH]
    assert len(shown) == 1, shown  # (the prefix alone names the key in the breadcrumbs)
    [secret] = shown
    assert secret.startswith(api_key.prefix)
    assert len(secret) > len(api_key.prefix)
    assert not any(secret in str(m) for m in response.context["messages"])
    assert all(secret not in morsel.value for morsel in response.cookies.values())
    assert all(secret not in str(value) for value in staff_client.session.values())

    # The secret is the key: it authenticates (and was stored only as a hash).
    assert api_for(secret, entity).get("/companies").status_code == 200
    assert secret not in str(ApiKey.objects.filter(pk=api_key.pk).values().get())

    # Never again: not on the list, not on the change page.
    for url in ("/admin/apikeys/apikey/", f"/admin/apikeys/apikey/{api_key.pk}/change/"):
        page = staff_client.get(url)
        assert page.status_code == 200
        assert secret not in page.content.decode()
        assert api_key.prefix in page.content.decode()


def test_add_refuses_a_user_who_is_not_a_member_of_the_entity(staff_client, entity, other_user):
    response = staff_client.post("/admin/apikeys/apikey/add/", add_form(entity, other_user))
    assert response.status_code == 200  # the form again, with the error
    assert "The user must be a member of the entity." in response.content.decode()
    assert not ApiKey.objects.exists()


def test_revoke_selected_action_revokes_the_keys(staff_client, entity, user):
    revoked = factories.make_key(entity, user, name="to revoke")
    kept = factories.make_key(entity, user, name="to keep")
    client = api_for(revoked.secret, entity)
    assert client.get("/companies").status_code == 200

    response = staff_client.post(
        "/admin/apikeys/apikey/",
        {"action": "revoke_selected", "_selected_action": [str(revoked.api_key.pk)]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Revoked 1 key(s)." in [str(m) for m in response.context["messages"]]

    assert ApiKey.objects.get(pk=revoked.api_key.pk).revoked_at is not None
    assert ApiKey.objects.get(pk=kept.api_key.pk).revoked_at is None
    assert_error(client.get("/companies"), 401)
    assert api_for(kept.secret, entity).get("/companies").status_code == 200
