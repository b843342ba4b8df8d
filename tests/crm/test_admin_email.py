"""The outbound-email admin: the disconnect action revokes through the service and forgets tokens."""

from __future__ import annotations

import pytest

from crm.choices import ConnectionStatus
from crm.email.connections import connection_connect
from crm.models import OutboundEmailConnection
from crm.providers.base import Mailbox
from crm.providers.oauth import TokenSet

pytestmark = pytest.mark.django_db


def connect(entity, user, address: str) -> OutboundEmailConnection:
    return connection_connect(
        entity=entity,
        channel="gmail",
        mailbox=Mailbox(email_address=address, display_name="Sales"),
        tokens=TokenSet(
            access_token=f"access-{address}", refresh_token=f"refresh-{address}", expires_at=None, scope=""
        ),
        user=user,
    )


def test_revoke_connections_action_revokes_and_forgets_the_tokens(staff_client, entity, user):
    revoked = connect(entity, user, "one@gmail.example")
    kept = connect(entity, user, "two@gmail.example")
    assert revoked.access_token_encrypted and revoked.refresh_token_encrypted

    response = staff_client.post(
        "/admin/crm/outboundemailconnection/",
        {"action": "revoke_connections", "_selected_action": [str(revoked.pk)]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Revoked 1 connection(s)." in [str(m) for m in response.context["messages"]]

    revoked.refresh_from_db()
    assert revoked.status == ConnectionStatus.REVOKED and revoked.revoked_at is not None
    assert (revoked.access_token_encrypted, revoked.refresh_token_encrypted) == ("", "")
    kept.refresh_from_db()
    assert (kept.status, kept.revoked_at) == (ConnectionStatus.ACTIVE, None)
    assert kept.access_token == "access-two@gmail.example"
    assert kept.refresh_token == "refresh-two@gmail.example"
