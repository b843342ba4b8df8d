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

from axes.attempts import get_cool_off_threshold
from axes.backends import AxesStandaloneBackend
from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username, get_cool_off, get_failure_limit
from axes.models import AccessAttempt
from django.contrib.auth.forms import AuthenticationForm
from django.db.models import Q, Sum
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

    def _counted(self, request, credentials) -> tuple[Q | None, int, Q | None, int]:
        """The recent failures of the attempt's email and of its address: (filter, count) each."""
        recent = AccessAttempt.objects.filter(attempt_time__gte=get_cool_off_threshold(request))
        username = get_client_username(request, credentials)
        address = getattr(request, "axes_ip_address", None)
        by_email = Q(username=username) if username else None
        by_address = Q(ip_address=address) if address else None
        return (
            by_email,
            _failures(recent.filter(by_email)) if by_email else 0,
            by_address,
            _failures(recent.filter(by_address)) if by_address else 0,
        )

    def get_failures(self, request, credentials=None) -> int:
        _, by_email, _, by_address = self._counted(request, credentials)
        return max(by_email, by_address // ADDRESS_LIMIT_FACTOR)

    def user_login_failed(self, sender, credentials, request=None, **kwargs):
        already_locked = getattr(request, "axes_locked_out", False)
        super().user_login_failed(sender, credentials, request=request, **kwargs)
        if request is None or already_locked or not getattr(request, "axes_locked_out", False):
            return
        # This failure set the lock: date the failures it counted to now, so the lock lasts the
        # full 15 minutes even when the first of them are older.
        limit = get_failure_limit(request, credentials)
        email_filter, by_email, address_filter, by_address = self._counted(request, credentials)
        locked = Q(pk__in=[])
        if email_filter is not None and by_email >= limit:
            locked |= email_filter
        if address_filter is not None and by_address // ADDRESS_LIMIT_FACTOR >= limit:
            locked |= address_filter
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
