"""`Authorization: Bearer ak_...` authentication for the API."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from apikeys.services import api_key_authenticate, api_key_touch


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """Authenticates a request by its API key; `request.auth` is then the `ApiKey`.

    A request without an Authorization header is left to the next class (browser sessions); any
    Authorization header that is not a usable key is a 401 with `WWW-Authenticate: Bearer`.
    """

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request)
        if not header:
            return None
        try:
            parts = header.decode("latin-1").split()
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
            parts = []
        if len(parts) != 2 or parts[0].lower() != self.keyword.lower():
            raise exceptions.AuthenticationFailed("Malformed Authorization header; use 'Bearer ak_...'.")
        api_key = api_key_authenticate(parts[1])
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked API key.")
        api_key_touch(api_key)
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
