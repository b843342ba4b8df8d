"""JSON parsing that turns every malformed body into a clear 4xx."""

from __future__ import annotations

import json
import re
from typing import Any

from django.conf import settings
from rest_framework import exceptions
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import JSONParser


class PayloadTooLarge(exceptions.APIException):
    status_code = 413
    default_detail = "Request body is larger than 1 MB."
    default_code = "payload_too_large"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# Request bodies of this API are shallow; a cap keeps every later walk (validation, error
# flattening) far from Python's recursion limit, so absurd nesting is a 400, never a 500.
MAX_DEPTH = 64
# JSON may escape a lone UTF-16 surrogate (`"\ud800"`); no UTF-8 text, response or database column can hold one.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_value(value: Any) -> None:
    """Refuse NUL characters and lone surrogates in any string (keys included) and nesting deeper than MAX_DEPTH.

    Iterative on purpose: a recursive walk itself overflows the stack on deeply nested input.
    """
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise exceptions.ParseError("Strings must not contain NUL characters.")
            if _SURROGATE.search(item):
                raise exceptions.ParseError("Strings must not contain unpaired surrogate escapes such as \\ud800.")
        elif isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                raise exceptions.ParseError(f"Malformed JSON body: nested deeper than {MAX_DEPTH} levels.")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)


class StrictJSONParser(JSONParser):
    """RFC 8259 JSON objects only: no NaN/Infinity or NUL, bounded nesting, at most `API_MAX_BODY_BYTES`."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.API_MAX_BODY_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLarge()
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise exceptions.ParseError(f"Malformed JSON body: {exc}") from None
        except RecursionError:
            raise exceptions.ParseError("Malformed JSON body: nested too deeply.") from None
        if not isinstance(data, dict):
            raise exceptions.ParseError("The JSON body must be an object.")
        _check_value(data)
        return data


class JsonOnlyNegotiation(DefaultContentNegotiation):
    """Bodies must say `application/json`; `*/*` or anything else → 415, as the contract says."""

    def select_parser(self, request, parsers):
        media_type = request.content_type.split(";", 1)[0].strip().lower()
        # A view that declares a multipart parser (file uploads) takes it; everything else is JSON.
        if media_type == "multipart/form-data" and any(p.media_type == media_type for p in parsers):
            return super().select_parser(request, parsers)
        if media_type != "application/json":
            return None
        return super().select_parser(request, parsers)
