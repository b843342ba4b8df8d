"""The API-key settings page in a real browser: create (secret shown once), use, revoke."""

from __future__ import annotations

import pytest
from django.test import Client
from playwright.sync_api import expect

from tests.browser.conftest import login

pytestmark = pytest.mark.browser


def call_api(secret: str, entity) -> int:
    response = Client().get("/api/crm/companies", {"entityId": str(entity.pk)}, HTTP_AUTHORIZATION=f"Bearer {secret}")
    return response.status_code


def test_create_use_and_revoke_an_api_key(page, owner, workspace):
    login(page, owner)
    page.get_by_role("link", name="API keys").click()
    page.wait_for_url("**/settings/api-keys")

    page.get_by_label("Name").fill("Reporting script")
    page.locator('input[name="scopes"][value="read:crm"]').check()
    page.get_by_role("button", name="Create key").click()

    secret_box = page.locator("[data-secret]")
    expect(secret_box).to_be_visible()
    secret = secret_box.input_value()
    assert secret.startswith("ak_")
    expect(page.get_by_role("button", name="Copy")).to_be_visible()
    assert call_api(secret, workspace) == 200

    # Shown once: a fresh visit lists the key by its prefix only.
    page.goto("/settings/api-keys")
    expect(page.locator("[data-secret]")).to_have_count(0)
    assert secret not in page.content()
    row = page.locator("tr[data-api-key-id]")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Reporting script")
    expect(row).to_contain_text(secret[:12])
    expect(row).to_contain_text("read:crm")

    row.get_by_role("link", name="Revoke Reporting script").click()
    page.get_by_role("button", name="Revoke key").click()
    page.wait_for_url("**/settings/api-keys**")
    expect(page.locator("tr[data-api-key-id]")).to_have_attribute("data-status", "revoked")
    assert call_api(secret, workspace) == 401
