"""Production-safe defaults and the smaller holes: passwords, password reset, demo_setup, secure
cookies and HSTS, Docker files, the switcher's `next`, OAuth callback URL, rate budgets, failed
API authentications, `lastUsedAt` of failing requests, four-digit years."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from django.conf import settings as django_settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import NoReverseMatch, reverse

from apikeys.models import ApiKey
from axiomatic.models import Membership, User
from crm.models import Activity
from tests import factories
from tests.helpers import ApiClient, assert_error

ROOT = Path(django_settings.BASE_DIR)

pytestmark = pytest.mark.django_db


# --- Password validators ----------------------------------------------------------------------


def test_all_four_django_password_validators_are_on():
    names = [v["NAME"].rsplit(".", 1)[1] for v in django_settings.AUTH_PASSWORD_VALIDATORS]
    assert names == [
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    ]


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("Ab3-xyz", "too short"),
        ("password123", "too common"),
        ("80417529163", "entirely numeric"),
        ("margaret.hamilton", "too similar"),
    ],
)
def test_weak_passwords_are_refused(password, message):
    user = User(email="margaret.hamilton@example.com", name="Margaret Hamilton")
    with pytest.raises(ValidationError) as refused:
        validate_password(password, user=user)
    assert any(message in text for text in refused.value.messages), refused.value.messages


def test_create_user_refuses_a_weak_password_and_creates_nobody(entity):
    with pytest.raises(CommandError, match="too common"):
        call_command("create_user", "weak@example.com", "--entity", str(entity.pk), "--password", "password123")
    with pytest.raises(CommandError, match="too similar"):
        call_command("create_user", "lovelace@example.com", "--entity", str(entity.pk), "--password", "lovelace")
    assert not User.objects.filter(email__in=["weak@example.com", "lovelace@example.com"]).exists()


def test_create_user_refuses_a_weak_new_password_for_an_existing_user(user, entity):
    with pytest.raises(CommandError, match="entirely numeric"):
        call_command("create_user", user.email, "--entity", str(entity.pk), "--password", "80417529163")
    user.refresh_from_db()
    assert user.check_password("pw-123456")


def test_create_user_accepts_a_good_password(entity):
    out = io.StringIO()
    call_command(
        "create_user", "good@example.com", "--entity", str(entity.pk), "--password", "Quiet-Lantern-71", stdout=out
    )
    assert User.objects.get(pk=json.loads(out.getvalue())["userId"]).check_password("Quiet-Lantern-71")


def test_password_change_page_applies_the_validators(user):
    browser = Client()
    browser.force_login(user)
    weak = {"old_password": "pw-123456", "new_password1": "password123", "new_password2": "password123"}
    response = browser.post("/accounts/password_change/", weak)
    assert response.status_code == 200 and "too common" in response.content.decode()
    good = {"old_password": "pw-123456", "new_password1": "Quiet-Lantern-71", "new_password2": "Quiet-Lantern-71"}
    assert browser.post("/accounts/password_change/", good).status_code == 302
    user.refresh_from_db()
    assert user.check_password("Quiet-Lantern-71")


# --- Password reset: removed ------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/accounts/password_reset/",
        "/accounts/password_reset/done/",
        "/accounts/reset/MQ/set-password/",
        "/accounts/reset/done/",
    ],
)
def test_there_is_no_self_service_password_reset(client, path):
    assert client.get(path).status_code == 404
    assert client.post(path, {"email": "someone@example.com"}).status_code == 404


def test_password_reset_url_names_are_gone_and_sign_in_urls_remain():
    for name in ("password_reset", "password_reset_done", "password_reset_complete"):
        with pytest.raises(NoReverseMatch):
            reverse(name)
    assert reverse("login") == "/accounts/login/"
    assert reverse("logout") == "/accounts/logout/"
    assert reverse("password_change") == "/accounts/password_change/"


# --- demo_setup -------------------------------------------------------------------------------


def test_demo_setup_refuses_to_run_with_debug_off(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG"):
        call_command("demo_setup", stdout=io.StringIO())
    assert not User.objects.filter(email="demo@example.com").exists()
    assert not ApiKey.objects.exists()


def test_demo_setup_refuses_with_debug_off_as_operators_run_it():
    env = {k: v for k, v in os.environ.items() if k != "DEBUG"}
    result = subprocess.run(
        [sys.executable, "manage.py", "demo_setup"],
        cwd=ROOT,
        env={**env, "DEBUG": "0", "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": "sqlite:///:memory:"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "DEBUG" in result.stderr


# --- Settings computed at import (a fresh process per environment) ------------------------------


_KEYS = ("SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS")
_SCRUB = ("DEBUG", "SECURE_", "OAUTH_REDIRECT_BASE_URL", "SECRET_KEY", "FIELD_ENCRYPTION_KEYS")


def settings_in(env: dict[str, str]) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB)}
    code = (
        "import json, axiomatic.settings as s; "
        f"out = {{k: getattr(s, k) for k in {_KEYS!r}}}; "
        "out['SECURE_PROXY_SSL_HEADER'] = getattr(s, 'SECURE_PROXY_SSL_HEADER', None); "
        "out['OAUTH_REDIRECT_BASE_URL'] = s.OAUTH_REDIRECT_BASE_URL; "
        "print(json.dumps(out))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env={**clean, "DEBUG": "1", **env}, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_plain_http_is_the_default():
    values = settings_in({})
    assert values == {
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
        "SECURE_SSL_REDIRECT": False,
        "SECURE_HSTS_SECONDS": 0,
        "SECURE_PROXY_SSL_HEADER": None,
        "OAUTH_REDIRECT_BASE_URL": "",
    }


def test_ssl_redirect_makes_cookies_secure_and_turns_on_hsts():
    values = settings_in({"SECURE_SSL_REDIRECT": "1"})
    assert values["SECURE_SSL_REDIRECT"] is True
    assert values["SESSION_COOKIE_SECURE"] is True and values["CSRF_COOKIE_SECURE"] is True
    assert values["SECURE_HSTS_SECONDS"] >= 31536000
    assert settings_in({"SECURE_SSL_REDIRECT": "1", "SECURE_HSTS_SECONDS": "600"})["SECURE_HSTS_SECONDS"] == 600


def test_secure_cookies_without_the_apps_redirect_for_a_proxy_that_redirects():
    values = settings_in({"SESSION_COOKIE_SECURE": "1", "CSRF_COOKIE_SECURE": "1"})
    assert values["SECURE_SSL_REDIRECT"] is False
    assert values["SESSION_COOKIE_SECURE"] is True and values["CSRF_COOKIE_SECURE"] is True
    assert values["SECURE_HSTS_SECONDS"] >= 31536000
    # Each can also be turned off on its own with the redirect on.
    values = settings_in({"SECURE_SSL_REDIRECT": "1", "CSRF_COOKIE_SECURE": "0"})
    assert values["SESSION_COOKIE_SECURE"] is True and values["CSRF_COOKIE_SECURE"] is False


def documented_production_settings() -> dict[str, str]:
    """The `sh` block under "Production settings (HTTPS)" in docs/operations.md, with its
    placeholders (`<...>`) filled in."""
    from cryptography.fernet import Fernet

    text = (ROOT / "docs" / "operations.md").read_text()
    section = text.split("### Production settings (HTTPS)", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    env = dict(line.split("=", 1) for line in block.splitlines() if line.strip())
    fills = {
        "SECRET_KEY": "x9" * 25 + "Qz-_" * 5,
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    }
    env = {name: fills.get(name, value.replace("<password>", "pw")) for name, value in env.items()}
    assert not [value for value in env.values() if "<" in value], env
    return env


def check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess:
    # DJANGO_ALLOW_ASYNC_UNSAFE: set by the browser tests' live server in this process, never in production.
    scrub = (
        *_SCRUB,
        "SESSION_COOKIE_",
        "CSRF_",
        "ALLOWED_HOSTS",
        "DJANGO_SETTINGS_MODULE",
        "TRUSTED_PROXY",
        "DJANGO_ALLOW_ASYNC_UNSAFE",
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(scrub)}
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "DEBUG"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_for_the_documented_production_settings():
    env = documented_production_settings()
    assert env["DEBUG"] == "0" and env["SECURE_SSL_REDIRECT"] == "1"
    result = check_deploy(env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (2 silenced)." in result.stdout, result.stdout + result.stderr


def test_check_deploy_is_clean_when_the_proxy_redirects_and_the_cookies_are_secure():
    env = {**documented_production_settings(), "SECURE_SSL_REDIRECT": "0"}
    env.update(SESSION_COOKIE_SECURE="1", CSRF_COOKIE_SECURE="1")
    result = check_deploy(env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues (3 silenced)" in result.stdout
    # Plain HTTP is not production: the check says so (cookies, HSTS, redirect).
    result = check_deploy({**env, "SESSION_COOKIE_SECURE": "0", "CSRF_COOKIE_SECURE": "0"})
    assert result.returncode != 0
    for check in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert check in result.stdout + result.stderr


def test_proxy_ssl_header_and_oauth_base_url_are_opt_in_settings():
    values = settings_in(
        {"SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO", "OAUTH_REDIRECT_BASE_URL": "https://crm.example.com/"}
    )
    assert values["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert values["OAUTH_REDIRECT_BASE_URL"] == "https://crm.example.com"


def test_a_malformed_oauth_base_url_fails_at_start_up():
    clean = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB)}
    result = subprocess.run(
        [sys.executable, "-c", "import axiomatic.settings"],
        env={**clean, "DEBUG": "1", "OAUTH_REDIRECT_BASE_URL": "crm.example.com"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "OAUTH_REDIRECT_BASE_URL" in result.stderr


def test_hsts_and_secure_cookies_are_sent_over_https(settings, user):
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True
    browser = Client()  # a new client builds its middleware from the settings above
    response = browser.post("/accounts/login/", {"username": user.email, "password": "pw-123456"}, secure=True)
    assert response["Strict-Transport-Security"].startswith("max-age=31536000")
    assert response.cookies["sessionid"]["secure"]


# --- Docker files -----------------------------------------------------------------------------


def test_compose_needs_real_secrets_and_connects_as_a_non_superuser():
    text = (ROOT / "docker-compose.yml").read_text()
    compose = yaml.safe_load(text)
    app_env = compose["x-app"]["environment"]
    assert app_env["SECRET_KEY"].startswith("${SECRET_KEY:?")
    assert "change-me" not in text
    assert app_env["DATABASE_URL"].startswith("postgres://axiomatic:${AXIOMATIC_DB_PASSWORD:?")
    assert app_env["DATABASE_URL"].endswith("}@db:5432/axiomatic")
    db = compose["services"]["db"]
    assert db["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    [mount] = [v for v in db["volumes"] if "docker-entrypoint-initdb.d" in v]
    script = (ROOT / mount.split(":")[0]).read_text()
    assert "CREATE ROLE axiomatic" in script and "NOSUPERUSER" in script
    assert "CREATE DATABASE axiomatic OWNER axiomatic" in script
    for name in ("web", "worker", "migrate"):
        assert compose["services"][name]["environment"] == app_env


def test_the_image_runs_as_a_non_root_user():
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    last_user = max(i for i, line in enumerate(lines) if line.startswith("USER "))
    assert not any(line.startswith("RUN ") for line in lines[last_user:])


def test_dockerignore_keeps_local_state_out_of_the_image():
    entries = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    for needed in (".git", ".venv", "**/__pycache__", "*.sqlite3", "db.sqlite3*", "node_modules"):
        assert needed in entries


# --- The entity switcher's `next` -------------------------------------------------------------


@pytest.fixture
def switcher(user, entity, other_entity):
    Membership.objects.create(user=user, entity=other_entity)
    browser = Client()
    browser.force_login(user)
    return lambda next_url: browser.post("/entity/switch", {"entity_id": str(other_entity.pk), "next": next_url})


@pytest.mark.parametrize(
    "next_url",
    [
        "//evil.example",
        "//evil.example/crm/board",
        "http://testserver//evil.example",
        "https://evil.example/",
        "http://testserver/crm/board",
        "/\\evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        "///evil.example",
        "javascript:alert(1)",
        "crm/board",
    ],
)
def test_switch_redirects_only_to_local_paths(switcher, next_url):
    response = switcher(next_url)
    assert response.status_code == 302 and response["Location"] == "/crm/board"


def test_switch_keeps_a_local_path_and_drops_the_entity(switcher, entity):
    response = switcher(f"/crm/leads/abc?entityId={entity.pk}&q=x")
    assert response["Location"] == "/crm/leads/abc?q=x"


# --- OAuth callback URL -----------------------------------------------------------------------


@pytest.fixture
def connect(settings, user, entity):
    settings.GOOGLE_OAUTH_CLIENT_ID, settings.GOOGLE_OAUTH_CLIENT_SECRET = "client-id", "client-secret"
    browser = Client()
    browser.force_login(user)

    def start(**extra):
        response = browser.get("/crm/connections/gmail/connect", {"entityId": str(entity.pk)}, **extra)
        assert response.status_code == 302
        query = parse_qs(urlsplit(response["Location"]).query)
        [redirect_uri], [state] = query["redirect_uri"], query["state"]
        # The code exchange later sends the same URI.
        assert browser.session["email_oauth_flows"][state]["redirectUri"] == redirect_uri
        return redirect_uri

    return start


def test_oauth_callback_url_uses_the_configured_public_base(settings, connect):
    settings.OAUTH_REDIRECT_BASE_URL = "https://crm.example.com"
    assert connect() == "https://crm.example.com/crm/connections/gmail/callback"


def test_oauth_callback_url_follows_the_request_by_default_and_a_trusted_proxy_header(settings, connect):
    assert connect() == "http://testserver/crm/connections/gmail/callback"
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    behind_proxy = {"HTTP_X_FORWARDED_PROTO": "https", "HTTP_HOST": "testserver"}
    assert connect(**behind_proxy) == "https://testserver/crm/connections/gmail/callback"


# --- API rate budgets -------------------------------------------------------------------------


def _wait_for_fresh_window(margin: float = 3.0) -> None:
    """The limits use one-minute windows; start well inside one so a burst is not split."""
    remaining = 60 - (time.time() % 60)
    if remaining < margin:
        time.sleep(remaining + 0.05)


def test_keys_of_one_user_share_one_rate_budget(settings, make_api):
    settings.API_RATE_LIMIT_PER_MINUTE = 4
    _wait_for_fresh_window()
    first, second = make_api(), make_api()
    assert [first.get("/companies").status_code for _ in range(2)] == [200, 200]
    assert [second.get("/companies").status_code for _ in range(2)] == [200, 200]
    for client in (first, second, make_api()):
        response = client.get("/companies")
        assert_error(response, 429)
        assert int(response["Retry-After"]) >= 1


def test_failed_authentications_are_limited_per_client_address(settings, api, entity):
    settings.API_AUTH_FAILURE_LIMIT_PER_MINUTE = 3
    _wait_for_fresh_window()

    def from_address(address: str, secret: str) -> ApiClient:
        return ApiClient(Client(REMOTE_ADDR=address), secret=secret, entity=entity, user=None)

    guesser = "198.51.100.66"
    for secret in ("ak_wrong-one-123456", "ak_wrong-two-123456", "not-even-a-key"):
        assert_error(from_address(guesser, secret).get("/companies"), 401)
    refused = from_address(guesser, "ak_wrong-four-123456").get("/companies")
    assert_error(refused, 429)
    assert 1 <= int(refused["Retry-After"]) <= 61
    # Past the limit even a valid key is refused from that address (no oracle for guesses) ...
    assert_error(from_address(guesser, api.secret).get("/companies"), 429)
    # ... while other addresses, and the same key elsewhere, are unaffected.
    assert from_address("203.0.113.66", api.secret).get("/companies").status_code == 200
    assert_error(from_address("203.0.113.67", "ak_wrong-five-123456").get("/companies"), 401)


def test_successful_authentications_do_not_count_as_failures(settings, api, entity):
    settings.API_AUTH_FAILURE_LIMIT_PER_MINUTE = 2
    _wait_for_fresh_window()
    client = ApiClient(Client(REMOTE_ADDR="203.0.113.70"), secret=api.secret, entity=entity, user=None)
    assert [client.get("/companies").status_code for _ in range(4)] == [200] * 4


# --- lastUsedAt of a failing request ----------------------------------------------------------


@pytest.mark.parametrize(
    ("scopes", "method", "body", "status"),
    [
        (("read:crm",), "post", {"name": "No write scope"}, 403),
        (("read:crm", "write:crm"), "post", {"name": ""}, 400),
        (("read:crm", "write:crm"), "get", None, 404),
    ],
)
def test_last_used_at_is_recorded_when_the_request_fails(
    make_api, django_capture_on_commit_callbacks, scopes, method, body, status
):
    api = make_api(scopes=scopes)
    path = "/companies" if method == "post" else "/companies/00000000-0000-0000-0000-000000000000"
    with django_capture_on_commit_callbacks(execute=True):  # (an on-commit write would be rolled back)
        response = api.post(path, body) if method == "post" else api.get(path)
    assert response.status_code == status
    api.api_key.refresh_from_db()
    assert api.api_key.last_used_at is not None


# --- Timestamps: four-digit years -------------------------------------------------------------


def test_timestamps_before_the_year_1000_are_refused_on_input(api):
    body = assert_error(
        api.post("/activities", {"type": "note", "subject": "Old", "occurredAt": "0354-08-26T10:00:00Z"}), 400
    )
    assert "occurredAt" in body["details"]
    assert not Activity.objects.exists()
    assert (
        api.post("/activities", {"type": "note", "subject": "Ok", "occurredAt": "1000-01-01T00:00:00Z"}).status_code
        == 201
    )


def test_a_year_354_timestamp_stored_elsewhere_comes_out_with_four_digits(api, entity):
    old = factories.make_activity(entity, occurred_at=datetime(354, 8, 26, 10, 0, tzinfo=UTC))
    response = api.get(f"/activities/{old.pk}")
    assert response.status_code == 200, response.content
    assert response.json()["activity"]["occurredAt"] == "0354-08-26T10:00:00.000000Z"
    listed = {a["id"]: a for a in api.get("/activities").json()["activities"]}
    assert listed[str(old.pk)]["occurredAt"] == "0354-08-26T10:00:00.000000Z"


def test_ordinary_timestamps_keep_their_shape(api, entity):
    activity = factories.make_activity(entity, occurred_at=datetime(2024, 2, 3, 4, 5, 6, 7, tzinfo=UTC))
    assert api.get(f"/activities/{activity.pk}").json()["activity"]["occurredAt"] == "2024-02-03T04:05:06.000007Z"
