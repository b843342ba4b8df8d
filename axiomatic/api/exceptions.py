"""The one error envelope: every API error is `{"error": "...", "details"?: {...}}`."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from axiomatic import errors
from axiomatic.api.serializers import to_camel
from axiomatic.ops.database import is_database_unavailable

logger = logging.getLogger("axiomatic.api")


class UnprocessableEntity(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "The request cannot be processed."
    default_code = "unprocessable"


def _flatten(detail) -> list[str]:
    if isinstance(detail, dict):
        return [m for value in detail.values() for m in _flatten(value)]
    if isinstance(detail, list):
        return [m for item in detail for m in _flatten(item)]
    return [str(detail)]


def _details(detail) -> dict[str, list[str]]:
    if isinstance(detail, dict):
        return {str(field): _flatten(messages) for field, messages in detail.items()}
    return {"nonFieldErrors": _flatten(detail)}


def validation_message(detail) -> str:
    """One readable sentence summarising field errors, naming the fields."""
    if isinstance(detail, dict):
        parts = []
        for field, messages in detail.items():
            text = " ".join(_flatten(messages))
            parts.append(text if field in ("non_field_errors", "nonFieldErrors") else f"{field}: {text}")
        return "Invalid input. " + " ".join(parts)
    return " ".join(_flatten(detail)) or "Invalid input."


def error_response(status_code: int, message: str, *, headers=None, **extra) -> Response:
    body = {"error": message, **{k: v for k, v in extra.items() if v is not None}}
    return Response(body, status=status_code, headers=headers)


def validation_error_response(detail, *, headers=None) -> Response:
    """A serializer's `ValidationError.detail` as the envelope (400, the sentence, `details`);
    also how a batch reports each failed item."""
    if isinstance(detail, dict) and set(detail) <= {"non_field_errors", "nonFieldErrors"}:
        return error_response(400, validation_message(detail), headers=headers)
    return error_response(
        400,
        validation_message(detail),
        details=_details(detail) if isinstance(detail, dict) else None,
        headers=headers,
    )


DOMAIN_STATUS: dict[type[errors.DomainError], int] = {
    errors.NotFound: status.HTTP_404_NOT_FOUND,
    errors.Conflict: status.HTTP_409_CONFLICT,
    errors.Invalid: status.HTTP_400_BAD_REQUEST,
    errors.Forbidden: status.HTTP_403_FORBIDDEN,
    errors.LimitExceeded: status.HTTP_429_TOO_MANY_REQUESTS,
}


def _camel_head(field: str) -> str:
    head, dot, rest = field.partition(".")
    return to_camel(head) + dot + rest


def domain_error_response(exc: errors.DomainError) -> Response:
    """A service's domain error as the envelope: its status, its sentence, its field messages."""
    status_code = next(code for cls, code in DOMAIN_STATUS.items() if isinstance(exc, cls))
    # `customFields.<key>`: only the part before the dot is a field name; the key stays as defined.
    details = {_camel_head(field): messages for field, messages in exc.field_errors.items()} or None
    headers = {}
    if isinstance(exc, errors.LimitExceeded) and exc.retry_after is not None:
        headers["Retry-After"] = str(int(exc.retry_after))
    existing_id = str(exc.existing_id) if isinstance(exc, errors.Conflict) and exc.existing_id else None
    merged_into = str(exc.merged_into) if isinstance(exc, errors.NotFound) and exc.merged_into else None
    return error_response(
        status_code, exc.message, headers=headers, details=details, existingId=existing_id, mergedInto=merged_into
    )


def api_exception_handler(exc, context):
    """DRF's EXCEPTION_HANDLER: shape every exception, including unexpected ones, as the envelope."""
    if is_database_unavailable(exc):
        # Re-raised: ATOMIC_REQUESTS rolls back, DatabaseUnavailableMiddleware answers 503 + Retry-After.
        return None
    if isinstance(exc, errors.DomainError):
        set_rollback()
        return domain_error_response(exc)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        exc = exceptions.APIException("Request body is larger than 1 MB.")
        exc.status_code = 413
    elif isinstance(exc, TooManyFieldsSent):
        exc = exceptions.ParseError(f"Too many query parameters (at most {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS}).")
    elif isinstance(exc, SuspiciousOperation):
        exc = exceptions.ParseError("Malformed request.")  # Django answers these 400 outside DRF too
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"nonFieldErrors": exc.messages}
        )

    set_rollback()
    if not isinstance(exc, exceptions.APIException):
        logger.exception("Unhandled error in API view", exc_info=exc)
        return error_response(500, "Internal server error.")

    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))

    if isinstance(exc, exceptions.ValidationError):
        return validation_error_response(exc.detail, headers=headers)
    message = " ".join(_flatten(exc.detail)) if not isinstance(exc.detail, str) else str(exc.detail)
    if isinstance(exc, exceptions.NotAuthenticated):
        message = "Authentication required: send Authorization: Bearer ak_... or sign in."
    return error_response(exc.status_code, message, headers=headers)
