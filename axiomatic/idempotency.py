"""`Idempotency-Key` on every POST under the API mounts that take it (`/api/crm/`).

A client that is unsure whether its POST arrived sends it again with the same key: it gets the
first response again (status and body, plus `Idempotent-Replayed: true`) and nothing is created
or sent twice. The same key with another body (or route) is a 422; while the first request is
still running, a 409. Only successful answers are kept (24 hours): a rejected request may be
corrected and retried with the same key.

This is a middleware, so it runs outside the view's database transaction (ATOMIC_REQUESTS wraps
only the view): a response is stored only after its transaction committed. State lives in the
Django cache (Redis in production and tests); `cache.add` is atomic there, so of two concurrent
requests with one key exactly one runs. Keys are scoped per credential (API key id or session
user) and entity, so one client can never replay another's response.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from urllib.parse import urlencode

from django.core.cache import cache
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.http import HttpRequest, HttpResponse, JsonResponse
from redis.exceptions import RedisError
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.settings import api_settings

from axiomatic import crypto
from axiomatic.access import MalformedAuthorization, bearer_token
from axiomatic.mounts import takes_idempotency_key
from axiomatic.tenancy.resolve import requested_entity_ids

logger = logging.getLogger("axiomatic.idempotency")

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
RESULT_TTL_SECONDS = 24 * 60 * 60
# Longer than any request may run (a crashed process must not block its key for a day).
LOCK_TTL_SECONDS = 5 * 60
_KEPT_HEADERS = ("Content-Type", "Location")
CACHE_ERRORS = (RedisError, OSError)


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _bearer_identity(request: HttpRequest) -> str | None:
    """The id of the usable credential behind `Authorization: Bearer`, found by the API's own
    authentication classes (REST_FRAMEWORK settings), or None when it is not usable.

    The classes keep their outcome on the HttpRequest (one authentication per request): a refusal
    here (401, or 429 past the address's failure budget) is not counted again when the view asks,
    and the view answers it with its own status, headers and error envelope.
    """
    drf_request = Request(request)
    for authentication_class in api_settings.DEFAULT_AUTHENTICATION_CLASSES:
        if issubclass(authentication_class, SessionAuthentication):
            continue
        try:
            result = authentication_class().authenticate(drf_request)
        except APIException:
            return None
        if result is not None:
            return str(getattr(result[1], "pk", result[1]))
    return None


def _credential(request: HttpRequest) -> str | None:
    """Who is asking: the usable API key's id, or the signed-in user; None when nobody (the view
    answers 401, and a rejected answer is never kept). A revoked key never replays."""
    try:
        token = bearer_token(request.META)
    except MalformedAuthorization:
        return None
    if token is not None:
        identity = _bearer_identity(request)
        return f"key:{identity}" if identity is not None else None
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    return None


def _canonical_body(body: bytes) -> bytes:
    """JSON bodies compare by meaning (key order and spacing do not matter); others by bytes."""
    try:
        return json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode("utf-8")
    except (ValueError, UnicodeDecodeError, RecursionError):
        return body


def _entity_ids(request: HttpRequest, body: bytes) -> list[str]:
    try:
        data = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        data = None
    values = requested_entity_ids(query=request.GET, body=data, meta=request.META)
    return sorted({value.strip().lower() for value in values if isinstance(value, str)})


@dataclass(frozen=True)
class IdempotencyScope:
    cache_key: str
    lock_key: str
    fingerprint: str


def idempotency_scope(request: HttpRequest, *, key: str, credential: str, body: bytes) -> IdempotencyScope:
    """Cache keys for (credential, entity, key) and the fingerprint of this exact request."""
    entities = ",".join(_entity_ids(request, body))
    # A JSON body may carry a lone surrogate (`"\ud800"`): hash it anyway, the parser answers it 400.
    scope = hashlib.sha256(f"{credential}\x00{entities}\x00{key}".encode("utf-8", "surrogatepass")).hexdigest()
    query = urlencode(sorted(request.GET.lists()), doseq=True)
    digest = hashlib.sha256()
    for part in (request.method.encode(), request.path.encode("utf-8"), query.encode("utf-8"), _canonical_body(body)):
        digest.update(part)
        digest.update(b"\x00")
    return IdempotencyScope(
        cache_key=f"idempotency:{scope}", lock_key=f"idempotency-lock:{scope}", fingerprint=digest.hexdigest()
    )


def _replay(stored: dict) -> HttpResponse:
    response = HttpResponse(crypto.decrypt(stored["body"]).encode("utf-8"), status=stored["status"])
    for name, value in stored["headers"].items():
        response[name] = value
    response[REPLAYED_HEADER] = "true"
    return response


def _valid_key(key: str) -> bool:
    return 1 <= len(key) <= MAX_KEY_LENGTH and all(" " <= ch <= "~" for ch in key)


class IdempotencyMiddleware:
    """Replays successful POSTs (under the API mounts that take keys) that repeat an `Idempotency-Key`."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        key = request.headers.get(HEADER)
        if key is None or request.method != "POST" or not takes_idempotency_key(request.path):
            return self.get_response(request)
        if not _valid_key(key):
            return _error(400, f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters.")
        credential = _credential(request)
        if credential is None:
            return self.get_response(request)  # refused by the view (401, 429); nothing to remember
        try:
            body = request.body
        except RequestDataTooBig:
            return self.get_response(request)  # answered 413 by the view
        try:
            scope = idempotency_scope(request, key=key, credential=credential, body=body)
        except TooManyFieldsSent:
            return self.get_response(request)  # answered 400 by the view
        try:
            refusal = self._claim(scope)
        except CACHE_ERRORS:
            # Without the store a repeat could not be recognised: refuse rather than risk a second send.
            logger.warning("Idempotency store unavailable", exc_info=True)
            return _error(503, f"Requests with {HEADER} cannot be processed right now; retry shortly.")
        if refusal is not None:
            return refusal
        response = self.get_response(request)
        try:
            if 200 <= response.status_code < 400 and not response.streaming:
                cache.set(
                    scope.cache_key,
                    {
                        "fingerprint": scope.fingerprint,
                        "status": response.status_code,
                        # Encrypted at rest: an answer may hold a secret shown once (a webhook
                        # endpoint's signing secret), and the store keeps it for a day.
                        "body": crypto.encrypt(response.content.decode("utf-8")),
                        "headers": {name: response[name] for name in _KEPT_HEADERS if response.has_header(name)},
                    },
                    timeout=RESULT_TTL_SECONDS,
                )
            cache.delete(scope.lock_key)
        except CACHE_ERRORS:
            # The work is done and committed: answer it. The lock expires on its own.
            logger.warning("Could not record an idempotent response", exc_info=True)
        return response

    def _claim(self, scope: IdempotencyScope) -> HttpResponse | None:
        """The stored or refusing answer for a repeat, or None once this request holds the key."""
        stored = cache.get(scope.cache_key)
        if stored is not None:
            return self._answer_stored(stored, scope)
        if not cache.add(scope.lock_key, scope.fingerprint, timeout=LOCK_TTL_SECONDS):
            stored = cache.get(scope.cache_key)  # the first one may have finished meanwhile
            if stored is not None:
                return self._answer_stored(stored, scope)
            if cache.get(scope.lock_key) not in (None, scope.fingerprint):
                return self._mismatch()
            return _error(409, f"A request with this {HEADER} is still in progress; retry shortly.")
        return None

    def _answer_stored(self, stored: dict, scope: IdempotencyScope) -> HttpResponse:
        if stored.get("fingerprint") != scope.fingerprint:
            return self._mismatch()
        try:
            return _replay(stored)
        except crypto.InvalidToken:  # the encryption key it was stored under has been retired
            return _error(409, f"The first answer to this {HEADER} can no longer be read; use a new key.")

    @staticmethod
    def _mismatch() -> JsonResponse:
        return _error(422, f"This {HEADER} was already used with a different request; use a new key for a new request.")
