"""`Authorization: Bearer ak_...` authentication for the API."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from apikeys.middleware import api_key_mark_used
from apikeys.services import api_key_authenticate
from axiomatic.access import MalformedAuthorization, bearer_token
from axiomatic.api.throttling import api_request_admit, auth_failure_record, auth_failures_check
from axiomatic.tenancy.resolve import named_entity_id_or_none

# The outcome of a request's authentication, kept on its HttpRequest (see `authenticate`).
_OUTCOME = "_api_key_authentication"
_NOT_YET = object()


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """Authenticates a request by its API key; `request.auth` is then the `ApiKey`.

    A request without an Authorization header is left to the next class (browser sessions); any
    Authorization header that is not a usable key is a 401 with `WWW-Authenticate: Bearer`.
    Failures count against the client address; past the limit its Bearer requests are a 429.

    A request is authenticated once: the outcome — (user, key), nothing, or the refusal — is kept
    on the HttpRequest and given again to any later asker. The idempotency middleware asks before
    the view does; without this a failed key would be counted twice against the address's budget,
    and the view would have to decide a second time what the middleware already knew.
    """

    keyword = "Bearer"

    def authenticate(self, request):
        http_request = getattr(request, "_request", request)
        outcome = getattr(http_request, _OUTCOME, _NOT_YET)
        if outcome is _NOT_YET:
            try:
                outcome = self._authenticate(request)
            except exceptions.APIException as exc:  # 401, or 429 past the failure budget
                outcome = exc
            setattr(http_request, _OUTCOME, outcome)
        if isinstance(outcome, exceptions.APIException):
            raise outcome
        return outcome

    def _authenticate(self, request):
        try:
            token = bearer_token(request.META)
        except MalformedAuthorization as exc:
            auth_failure_record(request)  # 429 instead when the address is past its budget
            raise exceptions.AuthenticationFailed(str(exc)) from None
        if token is None:
            return None
        auth_failures_check(request)
        # Row-level security: the key is looked up inside the entity the request names, which the
        # same round trip makes the transaction's entity (the entity check then needs no query).
        entity_id = named_entity_id_or_none(query=request.query_params, meta=request.META)
        api_key = api_key_authenticate(token, entity_id=entity_id, request=request)
        if api_key is None:
            auth_failure_record(request)  # 429 instead when the address is past its budget
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked API key.")
        # The address's failure budget and the user's request count: one Redis round trip.
        api_request_admit(request, api_key.user_id)
        api_key_mark_used(request, api_key)
        return api_key.user, api_key

    def authenticate_header(self, request) -> str:
        return self.keyword


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "apikeys.authentication.ApiKeyAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "Create keys under Settings → API keys. Prefix ak_. Send as Authorization: Bearer ak_....",
        }
