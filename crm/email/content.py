"""What a user may put in an email, checked before anything is stored.

Kept apart from queueing and delivery because these are pure functions of user input: every
header value that reaches the provider (subject, addresses) has passed through here, so header
injection and unsafe HTML are ruled out in one place, and each rule is testable without a
database.
"""

from __future__ import annotations

import re
import unicodedata
from email.headerregistry import Address
from email.policy import default as default_policy
from html.parser import HTMLParser

import nh3
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from axiomatic import errors

MAX_SUBJECT_LENGTH = 255


# --- HTML and the text part -------------------------------------------------------------------


def html_sanitize(html: str) -> str:
    """Allow-list HTML (nh3): no scripts, styles, event handlers or javascript: links."""
    return nh3.clean(
        html,
        url_schemes={"http", "https", "mailto", "tel"},
        link_rel="noopener noreferrer",
        strip_comments=True,
    )


class _TextExtractor(HTMLParser):
    _BLOCKS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "hr", "table"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._links: list[str | None] = []

    def handle_starttag(self, tag, attrs):
        if tag in self._BLOCKS:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("- ")
        if tag == "a":
            self._links.append(dict(attrs).get("href"))

    def handle_endtag(self, tag):
        if tag == "a" and self._links:
            href = self._links.pop()
            if href and not href.startswith("mailto:"):
                self.parts.append(f" ({href})")
        if tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data):
        self.parts.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """A readable plain-text part from (already sanitised) HTML, for the multipart/alternative."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = [line.strip() for line in "".join(parser.parts).splitlines()]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))
    return text.strip()


# --- Header values: subject and addresses -----------------------------------------------------


def _has_control_characters(value: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in value)


def subject_clean(subject: str) -> str:
    """A subject safe for a header: ≤255 characters, no CR/LF or other control characters."""
    if "\r" in subject or "\n" in subject:
        raise errors.Invalid("The subject must not contain line breaks.", field="subject")
    if _has_control_characters(subject):
        raise errors.Invalid("The subject must not contain control characters.", field="subject")
    subject = subject.strip()
    if not subject:
        raise errors.Invalid("The subject must not be blank.", field="subject")
    if len(subject) > MAX_SUBJECT_LENGTH:
        raise errors.Invalid(f"The subject must be at most {MAX_SUBJECT_LENGTH} characters.", field="subject")
    return subject


def address_parse(value: object, *, field_name: str) -> str:
    """One recipient (`a@example.com` or `Name <a@example.com>`), normalised; else a 400."""
    invalid = errors.Invalid(f"{field_name}: {str(value)[:100]!r} is not a valid email address.", field=field_name)
    if not isinstance(value, str) or not value.strip() or len(value) > 320 or _has_control_characters(value):
        raise invalid
    try:
        header = default_policy.header_factory("To", value.strip())
        addresses = list(header.addresses)
    except Exception:  # the stdlib parser raises assorted errors on garbage
        raise invalid from None
    if header.defects or len(addresses) != 1:
        raise invalid
    address = addresses[0]
    try:
        validate_email(address.addr_spec)
    except ValidationError:
        raise invalid from None
    normalised = Address(display_name=address.display_name, username=address.username, domain=address.domain.lower())
    return str(normalised)


def _addr_spec(value: str) -> str:
    return default_policy.header_factory("To", value).addresses[0].addr_spec.lower()


def recipients_parse(values: list | None, *, field_name: str) -> list[str]:
    """Every address parsed (400 naming the field otherwise); duplicates dropped, order kept."""
    if values is None:
        return []
    result: list[str] = []
    seen: set[str] = set()
    for value in values:
        parsed = address_parse(value, field_name=field_name)
        spec = _addr_spec(parsed)
        if spec not in seen:
            seen.add(spec)
            result.append(parsed)
    return result
