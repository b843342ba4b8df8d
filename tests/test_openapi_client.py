"""A client generated from `/api/schema` with openapi-python-client, used as a consumer would.

The client is generated into a temporary directory during the test (offline: the generator only
reads the schema; its formatting hooks are off), then a short script drives the live server
through it with a real API key: a company, a contact with a membership, a lead moved to won, the
lead's timeline, the dashboard, and a list paged to its end. The names it calls are the schema's
operationIds (`create_company`, `move_lead_stage`, ...), its models the schema's components.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)

PACKAGE = "axiomatic_client"
GENERATOR = shutil.which("openapi-python-client", path=str(Path(sys.executable).parent)) or "openapi-python-client"


def generate_client(schema_url: str, workdir: Path) -> None:
    """Write the `axiomatic_client` package for the schema at `schema_url` into `workdir`."""
    schema = workdir / "openapi.json"
    response = requests.get(schema_url, params={"format": "json"}, timeout=60)
    response.raise_for_status()
    schema.write_bytes(response.content)
    config = workdir / "client.yaml"
    config.write_text(f"project_name_override: axiomatic-client\npackage_name_override: {PACKAGE}\npost_hooks: []\n")
    result = subprocess.run(
        [
            GENERATOR,
            "generate",
            "--path",
            str(schema),
            "--output-path",
            str(workdir / PACKAGE),
            "--meta",
            "none",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # The generator reports what it could not turn into code as warnings; there must be none.
    assert "Warning" not in output and "Error" not in output, output


@pytest.fixture
def client_package(live_server, tmp_path):
    generate_client(f"{live_server.url}/api/schema", tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def test_a_generated_client_drives_the_api(client_package, live_server, entity, user):
    from axiomatic_client import AuthenticatedClient
    from axiomatic_client.api.companies import create_company, get_company, list_companies
    from axiomatic_client.api.contacts import create_contact, create_contact_company_membership
    from axiomatic_client.api.dashboard import get_dashboard
    from axiomatic_client.api.leads import create_lead, list_lead_timeline, move_lead_stage
    from axiomatic_client.models import (
        CompanyRequest,
        ContactRequest,
        Error,
        LeadRequest,
        LeadStageMoveRequest,
        LeadStatusEnum,
        MembershipRequest,
    )

    secret = factories.make_key(entity, user).secret
    api = AuthenticatedClient(base_url=live_server.url, token=secret, raise_on_unexpected_status=True)
    entity_id = entity.pk

    company = create_company.sync(
        client=api, entity_id=entity_id, body=CompanyRequest(name="Northwind", domain="https://www.Northwind.example/")
    ).company
    assert company.domain == "www.northwind.example"

    contact = create_contact.sync(
        client=api, entity_id=entity_id, body=ContactRequest(first_name="Ada", email="Ada@Northwind.example")
    ).contact
    membership = create_contact_company_membership.sync(
        client=api,
        entity_id=entity_id,
        contact_id=contact.id,
        body=MembershipRequest(company_id=company.id, title="CTO"),
    ).membership
    assert (membership.company_id, membership.is_primary) == (company.id, True)

    lead = create_lead.sync(
        client=api,
        entity_id=entity_id,
        body=LeadRequest(title="Pilot", company_id=company.id, contact_id=contact.id, value="12500.5"),
    ).lead
    assert (lead.value, lead.status) == ("12500.50", LeadStatusEnum.OPEN)

    won = move_lead_stage.sync(
        client=api, entity_id=entity_id, lead_id=lead.id, body=LeadStageMoveRequest(stage="won")
    ).lead
    assert (won.status, won.probability_pct) == (LeadStatusEnum.WON, 100)

    timeline = list_lead_timeline.sync(client=api, entity_id=entity_id, lead_id=lead.id).timeline
    assert [str(event.kind) for event in timeline] == ["stage_changed", "lead_created"]

    dashboard = get_dashboard.sync(client=api, entity_id=entity_id)
    assert dashboard.leads.won == 1
    assert [(money.currency, money.amount) for money in dashboard.totals.won_value_this_month] == [("USD", "12500.50")]

    # Errors come back as the envelope's model, with the status the schema documents.
    missing = get_company.sync_detailed(client=api, entity_id=entity_id, company_id=uuid.uuid4())
    assert missing.status_code == 404 and isinstance(missing.parsed, Error)

    # A list paged to its end.
    for n in range(4):
        create_company.sync(client=api, entity_id=entity_id, body=CompanyRequest(name=f"Paged {n}"))
    names, page = [], 1
    while True:
        listing = list_companies.sync(client=api, entity_id=entity_id, page=page, page_size=2)
        names += [item.name for item in listing.companies]
        if not listing.has_more:
            break
        page += 1
    assert names == sorted(["Northwind", "Paged 0", "Paged 1", "Paged 2", "Paged 3"]) and page == 3
    assert listing.total == 5
