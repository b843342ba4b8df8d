"""Tokens at rest: MultiFernet over FIELD_ENCRYPTION_KEYS, and the key rotation command."""

from __future__ import annotations

import io
import json

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command

from axiomatic import crypto
from crm.models import OutboundEmailConnection

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()


def test_encrypt_round_trip_and_ciphertext_differs(settings):
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    ciphertext = crypto.encrypt("secret-token")
    assert "secret-token" not in ciphertext
    assert crypto.decrypt(ciphertext) == "secret-token"
    assert crypto.encrypt("") == "" and crypto.decrypt("") == ""


def test_demo_key_is_derived_from_secret_key_only_in_debug(settings):
    settings.FIELD_ENCRYPTION_KEYS = []
    settings.DEBUG = True
    ciphertext = crypto.encrypt("t")
    assert crypto.decrypt(ciphertext) == "t"
    settings.SECRET_KEY = "another-secret"
    with pytest.raises(crypto.InvalidToken):
        crypto.decrypt(ciphertext)
    settings.DEBUG = False
    with pytest.raises(ImproperlyConfigured):
        crypto.encrypt("t")


def test_a_malformed_key_is_a_configuration_error(settings):
    settings.FIELD_ENCRYPTION_KEYS = ["not-a-fernet-key"]
    with pytest.raises(ImproperlyConfigured):
        crypto.encrypt("t")


def test_rotation_reencrypts_every_token_with_the_newest_key(settings, make_connection):
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    gmail = make_connection("gmail")
    outlook = make_connection("outlook")
    plain = {c.pk: (c.access_token, c.refresh_token) for c in (gmail, outlook)}
    before = dict(OutboundEmailConnection.objects.values_list("pk", "access_token_encrypted"))

    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]  # new key first, old still readable
    out = io.StringIO()
    call_command("rotate_encryption_keys", stdout=out)
    assert json.loads(out.getvalue()) == {"rotated": 2, "failed": []}

    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]  # the old key can now be dropped
    for connection in OutboundEmailConnection.objects.all():
        assert connection.access_token_encrypted != before[connection.pk]
        assert (connection.access_token, connection.refresh_token) == plain[connection.pk]
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    with pytest.raises(crypto.InvalidToken):
        OutboundEmailConnection.objects.first().access_token  # noqa: B018


def test_rotation_reports_tokens_no_key_can_open(settings, make_connection):
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    connection = make_connection("gmail")
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]  # the old key was lost
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("rotate_encryption_keys", stdout=out)
    assert json.loads(out.getvalue()) == {"rotated": 0, "failed": [str(connection.pk)]}


def test_rotation_reencrypts_webhook_secrets_too(settings, entity):
    from webhooks.models import WebhookEndpoint

    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    endpoint = WebhookEndpoint(entity=entity, url="https://hooks.example/in", event_types=["*"])
    endpoint.set_secret("whsec_new", previous="whsec_old", previous_expires_at=None)
    endpoint.save()
    before = endpoint.secret_encrypted

    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    out = io.StringIO()
    call_command("rotate_encryption_keys", stdout=out)
    assert json.loads(out.getvalue()) == {"rotated": 1, "failed": []}

    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]
    endpoint.refresh_from_db()
    assert endpoint.secret_encrypted != before
    assert endpoint.secret == "whsec_new"
