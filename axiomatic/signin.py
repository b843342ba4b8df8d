"""Sign-in protection, built on django-axes.

The rule: after `LOGIN_FAILURE_LIMIT` (default 10) failed sign-ins for one email, or 5 × that
from one client address, within 15 minutes, further attempts for that email or that address are
refused for 15 minutes, the right password included. A successful sign-in does not reset another
address's count.

How axes is used (settings under "Sign-in protection"):

- `SignInLockoutBackend` sits first in `AUTHENTICATION_BACKENDS`: it refuses a locked email or
  address *before* any password is checked, for every `authenticate(request, ...)` — the sign-in
  page and the admin login alike. API keys never go through `authenticate()` and are unaffected.
- Axes records each failure in its database table (`axes.AccessAttempt`, one row per email,
  address and user agent, with a count and the time of the latest failure; a row drops out 15
  minutes after its latest failure). The database handler keeps tests isolated like any other
  row, and every web process sees the same counts.
- Axes compares one number with one limit. With `AXES_LOCKOUT_PARAMETERS = ["username",
  "ip_address"]` it would lock an address after as few failures as an email; `get_failures`
  below therefore reports `max(failures of the email, failures of the address // 5)`, so the one
  limit `AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT` means 10 per email and 50 per address.
- Attempts made while locked are refused and not counted
  (`AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False`), so a lock ends 15 minutes after the
  failure that set it, however often the attacker keeps trying.
- `AXES_RESET_ON_SUCCESS` stays off (it would wipe the email's failures from *every* address);
  instead a successful sign-in clears only the failures of that email from that same address.
- Emails are counted case-insensitively and trimmed, as users sign in with them.
- A locked attempt gets the sign-in page again with a clear error, status 429 and `Retry-After`.
"""

from __future__ import annotations

from axes.attempts import get_cool_off_threshold
from axes.backends import AxesStandaloneBackend
from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username, get_cool_off
from axes.models import AccessAttempt
from django.contrib.auth.forms import AuthenticationForm
from django.db.models import Sum
from django.shortcuts import render

# An address may fail this many times the per-email limit before it is locked.
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


class SignInAttemptHandler(AxesDatabaseHandler):
    """Axes' database handler with the per-address limit at 5 × the per-email limit."""

    def get_failures(self, request, credentials=None) -> int:
        recent = AccessAttempt.objects.filter(attempt_time__gte=get_cool_off_threshold(request))
        username = get_client_username(request, credentials)
        by_email = _failures(recent.filter(username=username)) if username else 0
        address = getattr(request, "axes_ip_address", None)
        by_address = _failures(recent.filter(ip_address=address)) if address else 0
        return max(by_email, by_address // ADDRESS_LIMIT_FACTOR)

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
