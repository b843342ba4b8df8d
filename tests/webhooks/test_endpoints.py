"""Webhook endpoints over the API and the settings page; URL checks (SSRF) with resolution mocked.

No test here sends anything anywhere: URLs are only checked, `socket.getaddrinfo` answers what
each test says, and the one delivery-time check is refused before any connection.
"""

from __future__ import annotations

import base64
import socket

import pytest

from axiomatic.models import Membership
from tests import factories
from webhooks import net
from webhooks.delivery import send
from webhooks.models import WebhookEndpoint
from webhooks.services import endpoint_secrets

PUBLIC = "93.184.216.34"
ENDPOINT_KEYS = {"id", "url", "eventTypes", "description", "enabled", "status", "createdAt", "updatedAt"}


@pytest.fixture
def resolves(monkeypatch):
    """`resolves(address, ...)`: every host name resolves to these addresses (no DNS, no traffic)."""
    table: dict = {"addresses": (PUBLIC,)}

    def fake_getaddrinfo(host, port, *args, **kwargs):
        family = {True: socket.AF_INET6, False: socket.AF_INET}
        return [(family[":" in a], socket.SOCK_STREAM, 6, "", (a, port)) for a in table["addresses"]]

    monkeypatch.setattr(net.socket, "getaddrinfo", fake_getaddrinfo)

    def set_(*addresses):
        table["addresses"] = addresses

    return set_


@pytest.fixture
def admin_api(make_api, entity):
    return make_api(user=factories.make_member(entity, role=Membership.Role.ADMIN))


def create(api, **body):
    return api.post("/webhook-endpoints", {"url": "https://hooks.example.com/in", **body})


def test_create_answers_the_secret_once_and_stores_it_encrypted(admin_api, resolves, numbered):
    response = create(admin_api, eventTypes=["lead.*", "contact.created"], description="CRM copy")
    assert response.status_code == 201, response.content
    body = response.json()["webhookEndpoint"]
    assert set(body) == ENDPOINT_KEYS | {"secret"}
    assert body["status"] == "active" and body["enabled"] is True
    assert body["eventTypes"] == ["lead.*", "contact.created"] and body["description"] == "CRM copy"
    secret = body["secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    stored = WebhookEndpoint.objects.get(pk=body["id"])
    assert secret not in stored.secret_encrypted and stored.secret == secret
    # Never again: not in reads, lists or updates.
    for answer in (
        admin_api.get(f"/webhook-endpoints/{body['id']}").json()["webhookEndpoint"],
        admin_api.get("/webhook-endpoints").json()["webhookEndpoints"][0],
        admin_api.patch(f"/webhook-endpoints/{body['id']}", {"description": "x"}).json()["webhookEndpoint"],
    ):
        assert set(answer) == ENDPOINT_KEYS
    listing = admin_api.get("/webhook-endpoints").json()
    assert {"page", "pageSize", "total", "totalExact", "hasMore", "nextCursor"} <= set(listing)
    assert listing["total"] == 1
    assert create(admin_api).json()["webhookEndpoint"]["eventTypes"] == ["*"]  # the default


def test_patch_delete_and_rotation(admin_api, resolves, numbered):
    endpoint = create(admin_api).json()["webhookEndpoint"]
    patched = admin_api.patch(
        f"/webhook-endpoints/{endpoint['id']}",
        {"url": "https://other.example.com/x", "eventTypes": ["*.deleted"], "enabled": False},
    ).json()["webhookEndpoint"]
    assert patched["url"] == "https://other.example.com/x" and patched["eventTypes"] == ["*.deleted"]
    assert patched["enabled"] is False and patched["status"] == "disabled"
    old = WebhookEndpoint.objects.get(pk=endpoint["id"]).secret
    rotated = admin_api.post(f"/webhook-endpoints/{endpoint['id']}/rotate-secret", {})
    assert rotated.status_code == 200, rotated.content
    new = rotated.json()["webhookEndpoint"]["secret"]
    assert new != old and endpoint_secrets(WebhookEndpoint.objects.get(pk=endpoint["id"])) == [new, old]
    deleted = admin_api.delete(f"/webhook-endpoints/{endpoint['id']}")
    assert deleted.status_code == 200 and deleted.json()["webhookEndpoint"]["id"] == endpoint["id"]
    assert admin_api.get(f"/webhook-endpoints/{endpoint['id']}").status_code == 404


def test_members_read_but_may_not_write_naming_the_role(make_api, admin_api, entity, resolves, numbered):
    endpoint = create(admin_api).json()["webhookEndpoint"]
    member = make_api(user=factories.make_member(entity, role=Membership.Role.MEMBER))
    assert member.get("/webhook-endpoints").status_code == 200
    assert member.get(f"/webhook-endpoints/{endpoint['id']}/deliveries").status_code == 200
    for response in (
        create(member),
        member.patch(f"/webhook-endpoints/{endpoint['id']}", {"enabled": False}),
        member.delete(f"/webhook-endpoints/{endpoint['id']}"),
        member.post(f"/webhook-endpoints/{endpoint['id']}/rotate-secret", {}),
        member.post(f"/webhook-endpoints/{endpoint['id']}/test", {}),
        member.post(f"/webhook-endpoints/{endpoint['id']}/replay", {"fromSeq": 1}),
    ):
        assert response.status_code == 403, response.content
        assert "admin role" in response.json()["error"] and "member" in response.json()["error"]
    read_only = make_api(scopes=("read:crm",))  # the owner, without write:crm
    assert create(read_only).status_code == 403 and "write:crm" in create(read_only).json()["error"]


def test_endpoints_of_another_entity_are_404(admin_api, other_api, resolves, numbered):
    theirs = create(other_api).json()["webhookEndpoint"]
    for response in (
        admin_api.get(f"/webhook-endpoints/{theirs['id']}"),
        admin_api.patch(f"/webhook-endpoints/{theirs['id']}", {"enabled": False}),
        admin_api.get(f"/webhook-endpoints/{theirs['id']}/deliveries"),
        admin_api.post(f"/webhook-endpoints/{theirs['id']}/replay", {"fromSeq": 1}),
    ):
        assert response.status_code == 404
    assert admin_api.get("/webhook-endpoints").json()["webhookEndpoints"] == []


NOT_ALLOWED = "is not allowed: webhooks go only to hosts whose addresses are all public"


@pytest.mark.parametrize(
    "url,addresses,message",
    [
        ("http://hooks.example.com/in", (PUBLIC,), "https"),
        ("ftp://hooks.example.com/in", (PUBLIC,), "https"),
        ("https://user:pw@hooks.example.com/in", (PUBLIC,), "user name"),
        ("https:///nohost", (PUBLIC,), "no host"),
    ],
)
def test_urls_that_are_not_https_are_refused_saying_why(admin_api, resolves, numbered, url, addresses, message):
    resolves(*addresses)
    response = create(admin_api, url=url)
    assert response.status_code == 400, response.content
    assert message in response.json()["error"] and "url" in response.json()["details"]
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize(
    "url,addresses",
    [
        ("https://hooks.example.com/in", ("127.0.0.1",)),
        ("https://hooks.example.com/in", ("::1",)),
        ("https://hooks.example.com/in", ("10.1.2.3",)),
        ("https://hooks.example.com/in", ("192.168.0.10",)),
        ("https://hooks.example.com/in", ("172.16.5.5",)),
        ("https://hooks.example.com/in", ("169.254.169.254",)),
        ("https://hooks.example.com/in", ("fe80::1",)),
        ("https://hooks.example.com/in", ("224.0.0.1",)),
        ("https://hooks.example.com/in", ("0.0.0.0",)),
        ("https://hooks.example.com/in", ("240.0.0.1",)),
        ("https://hooks.example.com/in", ("100.64.0.1",)),
        ("https://hooks.example.com/in", ("::ffff:127.0.0.1",)),
        ("https://hooks.example.com/in", ("fc00::1",)),
        ("https://hooks.example.com/in", (PUBLIC, "10.0.0.1")),  # one bad answer is enough
        ("https://127.0.0.1/in", ("127.0.0.1",)),
        ("https://[::1]:8443/in", ("::1",)),
    ],
)
def test_hosts_that_are_not_public_are_refused_without_naming_the_address(
    admin_api, resolves, numbered, url, addresses
):
    """The refusal is the same for every kind of address, and names neither the address the host
    resolved to nor its kind: saving endpoints must not map the server's network."""
    resolves(*addresses)
    response = create(admin_api, url=url)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    host = net.parse(url)[1]
    assert error == f"The host {host} {NOT_ALLOWED}." and "url" in response.json()["details"]
    for address in addresses if host == "hooks.example.com" else ():
        assert address not in error
    for kind in ("loopback", "private", "link-local", "multicast", "reserved", "unspecified", "non-public"):
        assert kind not in error
    assert not WebhookEndpoint.objects.exists()


def test_the_settings_page_refuses_an_internal_host_without_naming_the_address(
    client, entity, user, resolves, numbered
):
    resolves("10.20.30.40")
    client.force_login(user)
    refused = client.post(
        f"/settings/webhooks?entityId={entity.pk}", {"action": "create", "url": "https://intranet.example.com/in"}
    )
    assert refused.status_code == 200 and NOT_ALLOWED.encode() in refused.content
    assert b"10.20.30.40" not in refused.content and b"private" not in refused.content
    assert not WebhookEndpoint.objects.exists()


def test_http_and_loopback_only_when_allowed(admin_api, resolves, numbered, settings):
    resolves("127.0.0.1")
    assert create(admin_api, url="http://localhost:9999/in").status_code == 400
    settings.WEBHOOK_ALLOW_HTTP = True
    assert NOT_ALLOWED in create(admin_api, url="http://localhost:9999/in").json()["error"]
    settings.WEBHOOK_ALLOW_LOOPBACK = True
    assert create(admin_api, url="http://localhost:9999/in").status_code == 201
    resolves("10.0.0.1")  # loopback allowed says nothing about private addresses
    assert NOT_ALLOWED in create(admin_api, url="http://localhost:9999/in").json()["error"]


def test_unresolvable_hosts_and_bad_event_types_are_400(admin_api, monkeypatch, resolves, numbered):
    assert "eventTypes" in create(admin_api, eventTypes=["nothing.*"]).json()["details"]
    assert "eventTypes" in create(admin_api, eventTypes=["lead.%"]).json()["details"]
    assert "eventTypes" in create(admin_api, eventTypes=[]).json()["details"]

    def no_dns(*args, **kwargs):
        raise socket.gaierror("Name or service not known")

    monkeypatch.setattr(net.socket, "getaddrinfo", no_dns)
    response = create(admin_api)
    # The same refusal as an internal address: whether a name exists in the server's DNS is not told.
    assert response.status_code == 400
    assert response.json()["error"] == f"The host hooks.example.com {NOT_ALLOWED}."


def test_the_check_is_repeated_at_delivery_time_after_resolution(admin_api, resolves, numbered, monkeypatch):
    """A host that resolved to a public address when saved and to a private one now is refused
    before any connection is made (DNS rebinding)."""
    endpoint = WebhookEndpoint.objects.get(pk=create(admin_api).json()["webhookEndpoint"]["id"])
    resolves("10.0.0.7")
    connected = []
    monkeypatch.setattr(net, "_pool", lambda *args: connected.append(args))
    result = send(endpoint, event_id="evt_test", body=b"{}")
    assert result.status is None and NOT_ALLOWED in result.error and connected == []
    assert "10.0.0.7" not in result.error and "private" not in result.error  # the deliveries log is read by the API


def test_the_connection_goes_to_the_checked_address(monkeypatch):
    """The pool is built for the checked address, with the host name only for Host and TLS."""
    monkeypatch.setattr(net, "resolve", lambda host, port: (PUBLIC,))
    target = net.check_url("https://hooks.example.com:8443/in?x=1")
    assert (target.host, target.port, target.path, target.host_header) == (
        "hooks.example.com",
        8443,
        "/in?x=1",
        "hooks.example.com:8443",
    )
    pool = net._pool.__wrapped__(target, PUBLIC, 5.0)  # built, never connected (conftest's guard)
    assert pool.host == PUBLIC and pool.conn_kw.get("server_hostname") == "hooks.example.com"
    assert pool.assert_hostname == "hooks.example.com"


def test_replay_needs_a_kept_seq(admin_api, resolves, numbered):
    endpoint = create(admin_api).json()["webhookEndpoint"]
    for body in ({"fromSeq": 0}, {"fromSeq": "1"}, {}):
        response = admin_api.post(f"/webhook-endpoints/{endpoint['id']}/replay", body)
        assert response.status_code == 400, (body, response.content)
    assert admin_api.post(f"/webhook-endpoints/{endpoint['id']}/replay", {"fromSeq": 3}).status_code == 202
    assert WebhookEndpoint.objects.get(pk=endpoint["id"]).delivered_seq == 2


def test_a_new_endpoint_starts_at_the_newest_change(admin_api, resolves, numbered):
    admin_api.post("/companies", {"name": "Before"})
    endpoint = create(admin_api).json()["webhookEndpoint"]
    newest = admin_api.get("/changes", {"cursor": "latest"})
    assert newest.status_code == 200
    assert WebhookEndpoint.objects.get(pk=endpoint["id"]).delivered_seq == 8  # 7 stages and the company


# --- the settings page --------------------------------------------------------------------------


def test_the_page_is_for_admins_and_shows_the_secret_once(client, entity, user, resolves, numbered):
    member = factories.make_member(entity)
    client.force_login(member)
    response = client.get(f"/settings/webhooks?entityId={entity.pk}")
    assert response.status_code == 403
    assert b"Webhooks</a>" not in client.get(f"/settings/api-keys?entityId={entity.pk}").content

    client.force_login(user)  # the owner
    page = client.get(f"/settings/webhooks?entityId={entity.pk}")
    assert page.status_code == 200 and b"No endpoints yet" in page.content
    assert b'href="/settings/webhooks"' in page.content
    created = client.post(
        f"/settings/webhooks?entityId={entity.pk}",
        {"action": "create", "url": "https://hooks.example.com/in", "event_types": "lead.*, contact.*"},
    )
    assert created.status_code == 200 and created["Cache-Control"].startswith("max-age=0")
    endpoint = WebhookEndpoint.objects.get(entity=entity)
    assert endpoint.secret.encode() in created.content and endpoint.event_types == ["lead.*", "contact.*"]
    assert endpoint.secret.encode() not in client.get(f"/settings/webhooks?entityId={entity.pk}").content

    refused = client.post(f"/settings/webhooks?entityId={entity.pk}", {"action": "create", "url": "http://x.example"})
    assert refused.status_code == 200 and b"https" in refused.content

    disabled = client.post(f"/settings/webhooks?entityId={entity.pk}", {"action": "disable", "endpoint": endpoint.pk})
    assert disabled.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.enabled is False
    client.post(f"/settings/webhooks?entityId={entity.pk}", {"action": "enable", "endpoint": endpoint.pk})
    client.post(
        f"/settings/webhooks?entityId={entity.pk}", {"action": "replay", "endpoint": endpoint.pk, "from_seq": "2"}
    )
    endpoint.refresh_from_db()
    assert endpoint.enabled is True and endpoint.delivered_seq == 1
    page = client.get(f"/settings/webhooks?entityId={entity.pk}")
    assert b"hooks.example.com" in page.content and b"Replay" in page.content


@pytest.mark.parametrize("text", ["٣", "３", "²", "", "0", "-1", "1.0", "3e2", "9" * 5000, str(2**62 + 1)])
def test_the_page_refuses_a_replay_seq_the_api_refuses(client, entity, user, resolves, numbered, text):
    """The page reads `from_seq` as the API reads `fromSeq` (ASCII digits, 1 to 2**62): other
    scripts' digits, superscripts or a number too long for int() are a clear error, never a 500."""
    client.force_login(user)
    client.post(f"/settings/webhooks?entityId={entity.pk}", {"action": "create", "url": "https://hooks.example.com/in"})
    endpoint = WebhookEndpoint.objects.get(entity=entity)
    before = (endpoint.delivered_seq, endpoint.generation)
    url = f"/settings/webhooks?entityId={entity.pk}"
    replay = client.post(url, {"action": "replay", "endpoint": endpoint.pk, "from_seq": text}, follow=True)
    assert replay.status_code == 200 and b"Give the seq to replay from" in replay.content
    endpoint.refresh_from_db()
    assert (endpoint.delivered_seq, endpoint.generation) == before
    assert client.post(url, {"action": "replay", "endpoint": endpoint.pk, "from_seq": " 2 "}).status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.delivered_seq == 1 and endpoint.generation == before[1] + 1
