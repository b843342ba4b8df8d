"""One currency rule (ISO 4217) for the API, the operator commands and the admin."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from axiomatic.models import Entity
from axiomatic.services import entity_create
from tests.helpers import assert_error


def test_the_api_refuses_a_lead_currency_that_is_not_iso_4217(api):
    body = assert_error(api.post("/leads", {"title": "Deal", "currency": "ZZZ"}), 400)
    assert "currency" in body["details"]
    assert api.post("/leads", {"title": "Deal", "currency": "eur"}).json()["lead"]["currency"] == "EUR"


def test_an_entity_cannot_be_created_with_an_unknown_default_currency(db):
    with pytest.raises(ValidationError):
        entity_create(name="Bad money", currency="ZZZ")
    with pytest.raises(CommandError, match="ISO 4217"):
        call_command("create_entity", "Bad money", "--currency", "ZZZ")
    assert not Entity.objects.filter(name="Bad money").exists()
