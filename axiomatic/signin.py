"""Sign-in protection, built on django-axes.

The rule, within 15 minutes (each lock lasts 15 minutes, the right password included):

- `LOGIN_FAILURE_LIMIT` (default 10) failed sign-ins for one email **from one client address**
  lock that email from that address only. Someone who knows an owner's email cannot lock the
  owner out from anywhere else; the owner signs in as usual from their own address.
- `LOGIN_EMAIL_FAILURE_LIMIT` (default 10 × `LOGIN_FAILURE_LIMIT`) failed sign-ins for one email
  from all addresses together lock that email everywhere: the ceiling on a password guessed from
  many addresses at once. As each address stops counting at its own limit, reaching it takes at
  least `LOGIN_EMAIL_FAILURE_LIMIT / LOGIN_FAILURE_LIMIT` addresses.
- `ADDRESS_LIMIT_FACTOR` (5) × `LOGIN_FAILURE_LIMIT` failed sign-ins from one client address,
  whatever the emails, lock that address for every email (one address spraying many emails).
- The client address is counted as `axiomatic.client_address.client_address` gives it: an IPv4
  address, or the /64 network of an IPv6 address (one client holds a whole /64, and could
  otherwise start a fresh count with each of its addresses). A successful sign-in does not reset
  another address's count.

How axes is used (settings under "Sign-in protection"):

- `SignInLockoutBackend` sits first in `AUTHENTICATION_BACKENDS`: it refuses a locked email or
  address *before* any password is checked, for every `authenticate(request, ...)` — the sign-in
  page and the admin login alike. API keys never go through `authenticate()` and are unaffected.
- Axes records each failure in its database table (`axes.AccessAttempt`, one row per email,
  address and user agent, with a count and the time of the latest failure; a row drops out 15
  minutes after its latest failure). The database handler keeps tests isolated like any other
  row, and every web process sees the same counts.
- Axes compares one number with one limit (`AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT`).
  `get_failures` below therefore reports the largest of the three counts, each scaled to that
  limit: the (email, address) count as it is, the email's count × limit / email limit, the
  address's count ÷ `ADDRESS_LIMIT_FACTOR`; so it reaches the limit exactly when one of the three
  reaches its own.
- A lock lasts 15 minutes from the failure that set it: that failure dates every failure it
  counted to its own time (so older ones cannot age out early), and attempts made while locked
  are refused and not counted (`AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False`), however
  often the attacker keeps trying.
- "Within 15 minutes" is axes' window: a row's failures count while its latest one is under 15
  minutes old. Failures of one email from one address in a steady trickle therefore keep adding
  up (stricter than a sliding window); failures from different addresses or for different
  emails are separate rows and age out one by one.
- `AXES_RESET_ON_SUCCESS` stays off (it would wipe the email's failures from *every* address);
  instead a successful sign-in clears only the failures of that email from that same address.
- Emails are counted case-insensitively and trimmed, as users sign in with them.
- A locked attempt gets the sign-in page again with a clear error, status 429 and `Retry-After`.
"""

from __future__ import annotations

from dataclasses import dataclass

from axes.attempts import get_cool_off_threshold
from axes.backends import AxesStandaloneBackend
from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username, get_cool_off, get_failure_limit
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.db.models import Q, Sum
from django.shortcuts import render

# An address may fail this many times the per-(email, address) limit, across emails, before it is locked.
ADDRESS_LIMIT_FACTOR = 5
_USERNAME_MAX = 255  # axes' column


def signin_username(request, credentials=None) -> str | None:
    """The email an attempt is counted against (`AXES_USERNAME_CALLABLE`): trimmed, lower-cased."""
    value = (credentials or {}).get("username")
    if value is None and request is not None and getattr(request, "method", None) == "POST":
        value = request.POST.get("username")
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip().lower()[:_USERNAME_MAX]


class SignInLockoutBackend(AxesStandaloneBackend):
    """Axes' lock-out check, first in `AUTHENTICATION_BACKENDS`; it never signs anyone in itself.

    `authenticate()` without a request (Django's test client `login()`, a shell) is not a sign-in
    over HTTP and has no address to count, so it is passed on to the next backend instead of
    raising; every HTTP sign-in form (the sign-in page, the admin login) passes its request.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def _failures(attempts) -> int:
    return attempts.aggregate(total=Sum("failures_since_start"))["total"] or 0


@dataclass(frozen=True)
class _Count:
    """The recent failures of one kind (an email from an address, an email, an address)."""

    rows: Q | None  # the AccessAttempt rows counted; None when the attempt has no such key
    failures: int
    limit: int

    @property
    def reached(self) -> bool:
        return self.rows is not None and self.failures >= self.limit


class SignInAttemptHandler(AxesDatabaseHandler):
    """Axes' database handler with the three limits of the module docstring."""

    def _counts(self, request, credentials) -> tuple[_Count, _Count, _Count]:
        """The recent failures of the attempt's (email, address), of its email and of its address."""
        recent = AccessAttempt.objects.filter(attempt_time__gte=get_cool_off_threshold(request))
        username = get_client_username(request, credentials)
        address = getattr(request, "axes_ip_address", None)
        pair_limit = get_failure_limit(request, credentials)

        def count(rows: Q | None, limit: int) -> _Count:
            return _Count(rows, _failures(recent.filter(rows)) if rows is not None else 0, limit)

        return (
            count(Q(username=username, ip_address=address) if username and address else None, pair_limit),
            count(Q(username=username) if username else None, settings.LOGIN_EMAIL_FAILURE_LIMIT),
            count(Q(ip_address=address) if address else None, pair_limit * ADDRESS_LIMIT_FACTOR),
        )

    def get_failures(self, request, credentials=None) -> int:
        limit = get_failure_limit(request, credentials)
        # Each count scaled to axes' one limit: it reaches `limit` exactly when it reaches its own.
        return max(count.failures * limit // count.limit for count in self._counts(request, credentials))

    def user_login_failed(self, sender, credentials, request=None, **kwargs):
        already_locked = getattr(request, "axes_locked_out", False)
        super().user_login_failed(sender, credentials, request=request, **kwargs)
        if request is None or already_locked or not getattr(request, "axes_locked_out", False):
            return
        # This failure set the lock: date the failures it counted to now, so the lock lasts the
        # full 15 minutes even when the first of them are older.
        locked = Q(pk__in=[])
        for count in self._counts(request, credentials):
            if count.reached:
                locked |= count.rows
        threshold = get_cool_off_threshold(request)
        AccessAttempt.objects.filter(locked, attempt_time__gte=threshold).update(attempt_time=request.axes_attempt_time)

    def user_logged_in(self, sender, request, user, **kwargs):
        super().user_logged_in(sender, request, user, **kwargs)
        address = getattr(request, "axes_ip_address", None)
        if address:
            # Only this email's failures from this address: the user has just proven who they are
            # here, which says nothing about attempts from anywhere else.
            AccessAttempt.objects.filter(username=signin_username(None, {"username": user.get_username()})).filter(
                ip_address=address
            ).delete()


def lockout_response(request, original_response=None, credentials=None):
    """`AXES_LOCKOUT_CALLABLE`: the sign-in form again, saying why, with 429 and `Retry-After`."""
    cool_off = get_cool_off(request)
    minutes = int(cool_off.total_seconds() // 60) if cool_off else None
    username = signin_username(request, credentials) or ""
    form = AuthenticationForm(request, initial={"username": username})
    next_url = request.POST.get("next", "") if request.method == "POST" else request.GET.get("next", "")
    context = {"form": form, "next": next_url, "locked_out": True, "lockout_minutes": minutes}
    response = render(request, "registration/login.html", context, status=429)
    if cool_off:
        response["Retry-After"] = str(int(cool_off.total_seconds()))
    return response
