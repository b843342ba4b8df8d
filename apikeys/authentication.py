"""`Authorization: Bearer ak_...` authentication for the API."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from apikeys.middleware import api_key_mark_used
from apikeys.services import api_key_authenticate
from axiomatic import errors
from axiomatic.access import MalformedAuthorization, bearer_token, requested_entity_ids, single_entity_id
from axiomatic.api.throttling import auth_failure_record, auth_failures_check
from axiomatic.rls import set_request_entity


def _named_entity_id(request):
    """The entity the query string or `x-entity-id` names (the body is not read here), or None
    when there is none or it is unusable: the entity check answers that later (400)."""
    try:
        return single_entity_id(requested_entity_ids(query=request.query_params, body=None, meta=request.META))
    except errors.Invalid:
        return None


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """Authenticates a request by its API key; `request.auth` is then the `ApiKey`.

    A request without an Authorization header is left to the next class (browser sessions); any
    Authorization header that is not a usable key is a 401 with `WWW-Authenticate: Bearer`.
    Failures count against the client address; past the limit its Bearer requests are a 429.
    """

    keyword = "Bearer"

    def authenticate(self, request):
        try:
            token = bearer_token(request.META)
        except MalformedAuthorization as exc:
            auth_failures_check(request)
            auth_failure_record(request)
            raise exceptions.AuthenticationFailed(str(exc)) from None
        if token is None:
            return None
        auth_failures_check(request)
        # Row-level security: the key is looked up inside the entity the request names, which is
        # the transaction's entity from now on (the entity check then needs no query of its own).
        entity_id = _named_entity_id(request)
        in_entity = entity_id is not None and set_request_entity(request, entity_id)
        api_key = api_key_authenticate(token, entity_id=entity_id if in_entity else None)
        if api_key is None:
            auth_failure_record(request)
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked API key.")
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
