"""Session authentication for the browser side of the API."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import SessionAuthentication


class EntitySessionAuthentication(SessionAuthentication):
    """Django's session login with CSRF on unsafe methods.

    Entity membership is checked with the entity resolution in the base viewset, the same way for
    sessions and keys; this class only identifies the user.
    """


class EntitySessionScheme(OpenApiAuthenticationExtension):
    target_class = "axiomatic.api.authentication.EntitySessionAuthentication"
    name = "cookieAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": "sessionid",
            "description": "Browser session (after /accounts/login/); send `x-entity-id` and the CSRF "
            "token on unsafe methods.",
        }
