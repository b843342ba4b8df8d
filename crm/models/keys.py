"""The normalised keys duplicate detection compares (crm.services.duplicates).

Kept in indexed columns of Contact and Company so finding a record's twins is an index lookup.
On PostgreSQL a trigger (migration 0018, functions `crm_dup_*`, the SQL twins of these; a test
compares the two) computes them whatever writes the row, COPY and bulk UPDATE included; the
models' `save()` fills them too, which is what the SQLite demo relies on.
"""

from __future__ import annotations

import re

LEGAL_SUFFIXES = [
    "inc",
    "incorporated",
    "corp",
    "corporation",
    "co",
    "ltd",
    "limited",
    "llc",
    "llp",
    "lp",
    "plc",
    "gmbh",
    "mbh",
    "ag",
    "kg",
    "ug",
    "sa",
    "sas",
    "sarl",
    "srl",
    "spa",
    "bv",
    "nv",
    "oy",
    "ab",
    "as",
    "pty",
    "pte",
    "kk",
]

_SPACES = re.compile(r"[ \t\n\r\f\v]+")
_PUNCTUATION = re.compile(r"[!-/:-@\[-`{-~]")
_SUFFIXES = re.compile(r"( (" + "|".join(LEGAL_SUFFIXES) + r"))+$")
_NOT_DIGIT = re.compile(r"[^0-9]")
_HOST = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*://)?(?:[^@/?#]*@)?([^/?#:@]+)")
GMAIL_DOMAINS = ("gmail.com", "googlemail.com")


def person_name_key(first_name: str | None, last_name: str | None) -> str | None:
    """`  Ada   LOVELACE ` → `ada lovelace`; None when there is no name."""
    text = _SPACES.sub(" ", f"{first_name or ''} {last_name or ''}").strip().lower()
    return text or None


def company_name_key(name: str | None) -> str | None:
    """`ACME, Inc.` → `acme`; `Müller GmbH & Co. KG` → `müller`; `B.V.` → `bv` (dots go, other
    punctuation becomes a space). A name that is only a suffix keeps it."""
    base = _SPACES.sub(" ", _PUNCTUATION.sub(" ", (name or "").lower().replace(".", ""))).strip()
    stripped = _SUFFIXES.sub("", f" {base}").strip()
    return (stripped or base) or None


def phone_key(phone: str | None) -> str | None:
    """The digits of a phone number, when there are at least 6 (fewer identify nothing)."""
    digits = _NOT_DIGIT.sub("", phone or "")
    return digits if len(digits) >= 6 else None


def email_key(email: str | None) -> str | None:
    """Lower-cased; Gmail addresses without dots and `+tags` in the local part, on gmail.com."""
    email = (email or "").strip().lower()
    if "@" not in email:
        return None
    local, _, domain = email.rpartition("@")
    if domain in GMAIL_DOMAINS:
        return f"{local.split('+', 1)[0].replace('.', '')}@gmail.com"
    return email


def website_host(website: str | None, domain: str | None = None) -> str | None:
    """The website's host without `www.` (`https://WWW.Acme.com/x` → `acme.com`), else the domain's."""
    for value in (website, domain):
        match = _HOST.match((value or "").strip())
        if match:
            host = match.group(1).lower().rstrip(".")
            host = host[4:] if host.startswith("www.") else host
            if "." in host:
                return host[:253]
    return None


def contact_keys(contact) -> dict[str, str | None]:
    return {
        "name_key": person_name_key(contact.first_name, contact.last_name),
        "phone_key": phone_key(contact.phone),
        "email_key": email_key(contact.email),
    }


def company_keys(company) -> dict[str, str | None]:
    return {
        "name_key": company_name_key(company.name),
        "phone_key": phone_key(company.phone),
        "website_host": website_host(company.website, company.domain),
    }


def fill_keys(instance, keys: dict[str, str | None], update_fields):
    """Set `keys` on the instance; a partial save (`update_fields`) writes them too."""
    for name, value in keys.items():
        setattr(instance, name, value)
    if update_fields is None:
        return None
    return {*update_fields, *keys}
