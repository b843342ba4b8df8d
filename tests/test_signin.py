"""Sign-in protection (django-axes): lock-out per (email, client address), a higher ceiling per
email across addresses, a limit per address; IPv6 clients counted per /64."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import F
from django.test import Client, RequestFactory

from axiomatic.client_address import client_address
from axiomatic.signin import ADDRESS_LIMIT_FACTOR
from tests import factories
from tests.helpers import ApiClient

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"
PASSWORD = "Sturdy-Passphrase-42"
LOCKED_TEXT = "Too many failed sign-in attempts"


@pytest.fixture
def member(db):
    return factories.make_user(email="alice@example.com", name="Alice", password=PASSWORD)


def sign_in(email: str, password: str, address: str = "192.0.2.1", *, path: str = LOGIN):
    """One sign-in attempt from `address`, with a fresh browser (no session carried over)."""
    client = Client(REMOTE_ADDR=address)
    response = client.post(path, {"username": email, "password": password})
    return response, client


def assert_signed_in(response, client) -> None:
    assert response.status_code == 302, response.content.decode()[:500]
    assert "_auth_user_id" in client.session


def assert_refused(response, client) -> None:
    assert response.status_code == 200 and "_auth_user_id" not in client.session


def assert_locked(response, client) -> None:
    assert response.status_code == 429, response.status_code
    assert LOCKED_TEXT in response.content.decode()
    assert int(response["Retry-After"]) == 15 * 60
    assert "_auth_user_id" not in client.session


def fail(email: str, address: str, times: int = 1) -> None:
    for _ in range(times):
        response, client = sign_in(email, "wrong-password", address)
        assert response.status_code in (200, 429)
        assert "_auth_user_id" not in client.session


def age_attempts(by: timedelta) -> None:
    """Move every recorded failure back in time (instead of waiting)."""
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - by)


def test_the_limits_are_the_contracts():
    assert settings.LOGIN_FAILURE_LIMIT == 10
    assert settings.LOGIN_EMAIL_FAILURE_LIMIT == 10 * settings.LOGIN_FAILURE_LIMIT
    assert settings.AXES_FAILURE_LIMIT == settings.LOGIN_FAILURE_LIMIT
    assert ADDRESS_LIMIT_FACTOR == 5
    assert settings.AXES_COOLOFF_TIME.total_seconds() == 15 * 60
    assert settings.AUTHENTICATION_BACKENDS[0] == "axiomatic.signin.SignInLockoutBackend"


def test_wrong_password_shows_the_usual_error(member):
    response, client = sign_in(member.email, "wrong-password")
    assert_refused(response, client)
    assert "Email or password is incorrect." in response.content.decode()
    assert LOCKED_TEXT not in response.content.decode()


def test_an_email_is_locked_from_one_address_after_the_limit_the_right_password_included(member):
    attacker = "198.51.100.1"
    fail(member.email, attacker, times=9)
    assert_signed_in(*sign_in(member.email, PASSWORD, "203.0.113.9"))  # 9 is under the limit

    response, client = sign_in(member.email, "wrong-password", attacker)  # the 10th failure
    assert_locked(response, client)
    # Refused from that address, with the right password, in any spelling of the email ...
    assert_locked(*sign_in(member.email, PASSWORD, attacker))
    assert_locked(*sign_in("  ALICE@Example.com ", PASSWORD, attacker))
    # ... and another email from that address is not affected.
    other = factories.make_user(email="bob@example.com", password=PASSWORD)
    assert_signed_in(*sign_in(other.email, PASSWORD, attacker))


def test_whoever_knows_an_email_cannot_lock_its_owner_out_from_elsewhere(member):
    attacker = "198.51.100.1"
    fail(member.email, attacker, times=30)  # the lock stops counting at 10
    assert_locked(*sign_in(member.email, PASSWORD, attacker))
    assert_signed_in(*sign_in(member.email, PASSWORD, "203.0.113.9"))  # the owner, from their address
    assert_signed_in(*sign_in(member.email, PASSWORD, "2001:db8:7::1"))


def test_an_email_is_locked_everywhere_at_its_ceiling_across_addresses(member):
    """Ten times the per-address limit for one email from many addresses: a password guessed from
    a botnet is stopped too. Each address stops counting at its own limit, so it takes at least
    ten addresses."""
    assert settings.LOGIN_EMAIL_FAILURE_LIMIT == 100
    for i in range(11):
        fail(member.email, f"198.51.100.{i + 1}", times=9)  # 99 in all, none of them locked
    assert_signed_in(*sign_in(member.email, PASSWORD, "203.0.113.9"))

    response, client = sign_in(member.email, "wrong-password", "198.51.100.50")  # the 100th
    assert_locked(response, client)
    assert_locked(*sign_in(member.email, PASSWORD, "203.0.113.9"))  # everywhere now
    assert_locked(*sign_in(" ALICE@example.COM", PASSWORD, "203.0.113.51"))
    other = factories.make_user(email="bob@example.com", password=PASSWORD)
    assert_signed_in(*sign_in(other.email, PASSWORD, "203.0.113.52"))  # another email is not affected

    age_attempts(timedelta(minutes=15, seconds=1))
    assert_signed_in(*sign_in(member.email, PASSWORD, "203.0.113.9"))


def test_an_address_is_locked_after_five_times_the_limit_across_emails(member):
    attacker = "198.51.100.77"
    for i in range(5 * 10 - 1):
        fail(f"nobody{i}@example.com", attacker)
    assert_signed_in(*sign_in(member.email, PASSWORD, attacker))  # 49: not yet

    response, client = sign_in("nobody-last@example.com", "wrong-password", attacker)  # the 50th
    assert_locked(response, client)
    # Every email is refused from that address, the right password included ...
    assert_locked(*sign_in(member.email, PASSWORD, attacker))
    # ... while the same email still signs in from elsewhere (its own count is 0).
    assert_signed_in(*sign_in(member.email, PASSWORD, "203.0.113.10"))


def test_the_lock_ends_after_fifteen_minutes_and_attempts_during_it_do_not_extend_it(member):
    fail(member.email, "198.51.100.1", times=10)
    assert_locked(*sign_in(member.email, PASSWORD, "198.51.100.1"))

    age_attempts(timedelta(minutes=14))
    assert_locked(*sign_in(member.email, PASSWORD, "198.51.100.1"))  # still locked
    fail(member.email, "198.51.100.1", times=3)  # refused, and not counted

    age_attempts(timedelta(minutes=1, seconds=1))  # 15 minutes and a second after the 10th failure
    assert_signed_in(*sign_in(member.email, PASSWORD, "198.51.100.1"))


def test_the_lock_lasts_fifteen_minutes_from_the_failure_that_set_it(member):
    fail(member.email, "198.51.100.1", times=9)
    age_attempts(timedelta(minutes=10))  # the first nine are ten minutes old
    # The 10th sets the lock (another browser: axes keeps one row per user agent; they add up).
    response = Client(REMOTE_ADDR="198.51.100.1", HTTP_USER_AGENT="Other/1.0").post(
        LOGIN, {"username": member.email, "password": "wrong-password"}
    )
    assert response.status_code == 429

    age_attempts(timedelta(minutes=10))  # the first nine would now be 20 minutes old
    assert_locked(*sign_in(member.email, PASSWORD, "198.51.100.1"))
    age_attempts(timedelta(minutes=5, seconds=1))
    assert_signed_in(*sign_in(member.email, PASSWORD, "198.51.100.1"))


def test_a_success_does_not_reset_another_addresses_count(member):
    fail(member.email, "198.51.100.1", times=9)
    assert_signed_in(*sign_in(member.email, PASSWORD, "203.0.113.1"))  # the user, elsewhere
    response, client = sign_in(member.email, "wrong-password", "198.51.100.1")
    assert_locked(response, client)  # 9 + 1: the success elsewhere cleared nothing of this address
    assert_locked(*sign_in(member.email, PASSWORD, "198.51.100.1"))
    assert_signed_in(*sign_in(member.email, PASSWORD, "203.0.113.1"))


def test_a_success_clears_only_that_emails_failures_from_the_same_address(member):
    address = "203.0.113.7"
    fail(member.email, address, times=9)
    fail("someone-else@example.com", address, times=3)
    assert_signed_in(*sign_in(member.email, PASSWORD, address))
    assert not AccessAttempt.objects.filter(username=member.email).exists()
    assert AccessAttempt.objects.get(username="someone-else@example.com").failures_since_start == 3
    fail(member.email, address, times=9)  # a fresh count: 9 is under the limit again
    assert_signed_in(*sign_in(member.email, PASSWORD, address))


def test_the_admin_login_is_protected_and_still_works(member):
    staff = factories.make_user(email="staff@example.com", password=PASSWORD)
    staff.is_staff = staff.is_superuser = True
    staff.save()
    response, client = sign_in(staff.email, PASSWORD, path="/admin/login/?next=/admin/")
    assert response.status_code == 302 and "_auth_user_id" in client.session

    fail(staff.email, "198.51.100.3", times=10)
    response, client = sign_in(staff.email, PASSWORD, "198.51.100.3", path="/admin/login/?next=/admin/")
    assert_locked(response, client)


def test_a_locked_email_does_not_stop_its_api_keys(member, entity, user):
    fail(user.email, "198.51.100.4", times=10)
    assert_locked(*sign_in(user.email, "pw-123456", "198.51.100.4"))
    issued = factories.make_key(entity, user)
    api = ApiClient(Client(), secret=issued.secret, entity=entity, user=user)
    assert api.get("/companies").status_code == 200


def test_failures_are_recorded_per_email_and_address_in_the_database(member):
    fail(" Alice@Example.COM", "198.51.100.5", times=2)
    attempt = AccessAttempt.objects.get()
    assert (attempt.username, attempt.ip_address, attempt.failures_since_start) == (
        "alice@example.com",
        "198.51.100.5",
        2,
    )


# --- The client address -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("proxies", "remote", "forwarded", "expected"),
    [
        (0, "192.0.2.1", "203.0.113.9", "192.0.2.1"),  # no proxy: a client's header is ignored
        (1, "10.0.0.2", "203.0.113.9", "203.0.113.9"),
        (1, "10.0.0.2", "6.6.6.6, 203.0.113.9", "203.0.113.9"),  # the client wrote the left part
        (2, "10.0.0.3", "6.6.6.6, 203.0.113.9, 10.0.0.2", "203.0.113.9"),
        (1, "10.0.0.2", "not-an-address", "10.0.0.2"),
        (1, "10.0.0.2", "", "10.0.0.2"),
        # IPv6 is counted per /64; IPv4 written as IPv6 is IPv4.
        (0, "2001:db8:1:2:aaaa:bbbb:cccc:dddd", "", "2001:db8:1:2::"),
        (0, "2001:DB8:1:2::1", "", "2001:db8:1:2::"),
        (0, "2001:db8:1:3::1", "", "2001:db8:1:3::"),
        (1, "10.0.0.2", "2001:db8:9:9:1::7", "2001:db8:9:9::"),
        (0, "::ffff:192.0.2.1", "", "192.0.2.1"),
    ],
)
def test_client_address_behind_proxies(settings, proxies, remote, forwarded, expected):
    settings.TRUSTED_PROXY_COUNT = proxies
    request = RequestFactory().get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)
    assert client_address(request) == expected


def test_behind_a_proxy_the_lock_counts_the_client_not_the_proxy(settings, member):
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = "10.0.0.2"
    for i in range(5 * 10):
        client = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="198.51.100.200")
        client.post(LOGIN, {"username": f"nobody{i}@example.com", "password": "wrong-password"})
    locked = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="198.51.100.200")
    assert locked.post(LOGIN, {"username": member.email, "password": PASSWORD}).status_code == 429
    someone_else = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="203.0.113.200")
    assert someone_else.post(LOGIN, {"username": member.email, "password": PASSWORD}).status_code == 302


def test_ipv6_clients_are_counted_per_64(member):
    """One client holds a whole /64: a new address in it is not a new count."""
    for i in range(9):
        fail(member.email, f"2001:db8:1:2::{i + 1:x}")
    assert AccessAttempt.objects.get().ip_address == "2001:db8:1:2::"
    response, client = sign_in(member.email, "wrong-password", "2001:db8:1:2:ffff::10")  # the 10th
    assert_locked(response, client)
    assert_locked(*sign_in(member.email, PASSWORD, "2001:db8:1:2:abcd:ef01:2345:6789"))
    assert_signed_in(*sign_in(member.email, PASSWORD, "2001:db8:1:3::1"))  # the next /64 is someone else


def test_failed_api_authentications_from_one_ipv6_64_share_one_budget(settings, entity):
    settings.API_AUTH_FAILURE_LIMIT_PER_MINUTE = 2
    remaining = 60 - (time.time() % 60)
    if remaining < 3:
        time.sleep(remaining + 0.05)

    def from_address(address: str) -> ApiClient:
        return ApiClient(Client(REMOTE_ADDR=address), secret="ak_wrong-guess-123456", entity=entity, user=None)

    assert from_address("2001:db8:5:6::1").get("/companies").status_code == 401
    assert from_address("2001:db8:5:6::2").get("/companies").status_code == 401
    assert from_address("2001:db8:5:6:ffff::3").get("/companies").status_code == 429
    assert from_address("2001:db8:5:7::1").get("/companies").status_code == 401
