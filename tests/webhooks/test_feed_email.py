"""An outbound email's life in the change feed: queued, sending, sent (and its activity)."""

from __future__ import annotations

from tests.crm.email.conftest import fake_provider, fake_provider_server, lead, make_connection  # noqa: F401
from tests.webhooks.test_feed import feed_since


def test_an_email_records_queued_sending_and_sent(api, numbered, fake_provider, make_connection, lead):  # noqa: F811
    from crm.email.delivery import email_deliver
    from tests.crm.email.conftest import email_body

    connection = make_connection("gmail")
    _, cursor = feed_since(api)
    response = api.post("/outbound-email", email_body(lead, connection))
    assert response.status_code == 202, response.content
    email_id = response.json()["email"]["id"]
    assert email_deliver(email_id=email_id).outcome == "sent"  # as the task calls it: the id as text
    changes_, _ = feed_since(api, cursor)
    assert [c["type"] for c in changes_] == [
        "outbound_email.created",
        "outbound_email.updated",
        "outbound_email.sent",
        "activity.created",
    ]
    assert changes_[0]["data"] == response.json()["email"]
    assert changes_[1]["previous"]["status"] == "queued" and changes_[1]["data"]["status"] == "sending"
    assert changes_[2]["data"] == api.get(f"/outbound-email/{email_id}").json()["email"]
    assert changes_[2]["previous"] is None and changes_[2]["actor"] == {"type": "system", "id": None}
    assert changes_[3]["data"]["type"] == "email"
