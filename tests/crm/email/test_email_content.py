"""Pure pieces of outbound email: sanitising, the text part, retry timing, the MIME message."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from crm.email.content import html_sanitize, html_to_text
from crm.email.delivery import retry_delay
from crm.providers.base import OutgoingMessage, parse_retry_after
from crm.providers.gmail import build_mime_message
from crm.providers.outlook import graph_message


def test_sanitiser_removes_scripts_handlers_and_javascript_links():
    dirty = (
        '<div onmouseover="x()"><script>alert(1)</script><style>p{}</style>'
        '<a href="javascript:alert(1)">a</a><a href="JaVaScRiPt:alert(1)">b</a>'
        '<iframe src="https://evil.example"></iframe><a href="https://ok.example">ok</a></div>'
    )
    clean = html_sanitize(dirty)
    for forbidden in ("script", "onmouseover", "javascript", "JaVaScRiPt", "iframe", "style"):
        assert forbidden not in clean
    assert '<a href="https://ok.example" rel="noopener noreferrer">ok</a>' in clean


def test_text_part_is_readable():
    html = "<h1>Offer</h1><p>Dear&nbsp;Carol,</p><ul><li>One</li><li>Two</li></ul><p>See <a href='https://x.example'>here</a></p>"
    assert html_to_text(html) == "Offer\n\nDear Carol,\n\n- One\n\n- Two\n\nSee here (https://x.example)"


def test_retry_delay_honours_retry_after_capped_at_ten_minutes(settings):
    assert retry_delay(attempts=1, retry_after=3) == 3
    assert retry_delay(attempts=1, retry_after=3600) == 600


def test_retry_delay_backs_off_exponentially_with_jitter(settings):
    settings.EMAIL_RETRY_BASE_SECONDS = 2
    for attempts, step in ((1, 2), (2, 4), (3, 8), (10, 1024)):
        delays = {retry_delay(attempts=attempts, retry_after=None) for _ in range(50)}
        assert all(min(step / 2, 600) <= d <= min(step, 600) for d in delays)
        assert len(delays) > 1  # jitter


@pytest.mark.parametrize(
    "header,expected",
    [(None, None), ("", None), ("7", 7.0), ("-3", 0.0), ("99999", 600.0), ("soon", None)],
)
def test_parse_retry_after_seconds(header, expected):
    assert parse_retry_after(header) == expected


def test_parse_retry_after_http_date():
    when = datetime.now(UTC) + timedelta(seconds=30)
    assert 25 <= parse_retry_after(format_datetime(when, usegmt=True)) <= 30


def test_mime_message_encodes_unicode_headers_and_keeps_parts():
    message = OutgoingMessage(
        from_address="alice@example.com",
        from_name="Alice Müller",
        to=["Jörg <jorg@example.de>"],
        cc=[],
        bcc=["hidden@example.org"],
        subject="Grüße – Angebot",
        html_body="<p>Hallo</p>",
        text_body="Hallo",
        message_id="<abc@example.com>",
    )
    raw = build_mime_message(message).as_bytes()
    assert b"M\xc3\xbcller" not in raw.split(b"\r\n\r\n")[0]  # headers are RFC 2047-encoded
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == "Grüße – Angebot"
    assert parsed["From"] == "Alice Müller <alice@example.com>"
    assert parsed["To"] == "Jörg <jorg@example.de>"
    assert parsed.get_content_type() == "multipart/alternative"
    assert parsed.get_body(("plain",)).get_content().strip() == "Hallo"


def test_text_only_message_has_no_html_part():
    message = OutgoingMessage(
        from_address="a@example.com",
        from_name="",
        to=["b@example.com"],
        cc=[],
        bcc=[],
        subject="Hi",
        html_body="",
        text_body="Plain",
        message_id="<x@example.com>",
    )
    parsed = email.message_from_bytes(build_mime_message(message).as_bytes(), policy=email.policy.default)
    assert parsed.get_content_type() == "text/plain"
    assert graph_message(message)["body"] == {"contentType": "Text", "content": "Plain"}
