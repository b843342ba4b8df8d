"""PostgreSQL row-level security (axiomatic/rls.py): the database refuses other entities' rows.

Test code normally runs with the named bypass on (tests/rls_support.py); `app_context()` and every
test-client request run as the application does: as DB_APP_ROLE, with no entity and no bypass
until the application's own code sets one.
"""

from __future__ import annotations

import pytest
from django.apps import apps
from django.conf import settings
from django.core.management import call_command
from django.db import DatabaseError, ProgrammingError, connection, connections, transaction

from apikeys.models import ApiKey
from axiomatic import rls
from axiomatic.models import Entity, Membership
from axiomatic.tenancy.database import enter_entity
from crm.choices import EmailStatus
from crm.models import Company, OutboundEmail, PipelineStage
from crm.tasks import send_outbound_email
from tests import factories
from tests.rls_support import app_context

RLS_VIOLATION = "row-level security"


@pytest.fixture
def companies(entity, other_entity):
    factories.make_company(entity, name="Ours")
    factories.make_company(other_entity, name="Theirs")


def _fetch(sql: str, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _execute(sql: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql)


# --- the database's state: forced policies on every entity table, the application role ---------


def test_every_table_with_an_entity_column_has_rls_forced_and_the_entity_policy(db):
    """Fails for any table with an `entity_id` column (from any app, or made by hand) left unprotected."""
    rows = _fetch(
        """
        SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
               array(SELECT p.policyname FROM pg_policies p
                     WHERE p.schemaname = current_schema() AND p.tablename = c.relname ORDER BY 1)
        FROM information_schema.columns col
        JOIN pg_class c ON c.relname = col.table_name AND c.relnamespace = to_regnamespace(current_schema())
        WHERE col.table_schema = current_schema() AND col.column_name = 'entity_id' AND c.relkind = 'r'
        ORDER BY 1
        """
    )
    tables = {name: (enabled, forced, policies) for name, enabled, forced, policies in rows}
    assert {"axiomatic_membership", "apikeys_apikey", "crm_company", "marketing_marketinglist"} <= set(tables)
    assert set(rls.tenant_tables(apps.get_models())) == set(tables)
    unprotected = {name: state for name, state in tables.items() if state != (True, True, [rls.POLICY_NAME])}
    assert unprotected == {}, "tables with entity_id but no forced row-level security / extra policies"
    [(qual, check)] = _fetch(
        "SELECT qual, with_check FROM pg_policies WHERE tablename = 'crm_company' AND policyname = %s",
        [rls.POLICY_NAME],
    )
    for expression in (qual, check):
        assert "app.entity_id" in expression and "app.rls_bypass" in expression


def test_the_application_runs_as_a_role_that_cannot_bypass_rls_and_owns_no_table(db):
    [(current_user, session_user)] = _fetch("SELECT current_user, session_user")
    assert current_user == settings.DB_APP_ROLE == "axiomatic_app"
    assert session_user == connection.settings_dict["USER"]  # the login user: a superuser in the tests
    [(is_superuser, bypasses_rls, can_log_in)] = _fetch(
        "SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = current_user"
    )
    assert (is_superuser, bypasses_rls, can_log_in) == (False, False, False)
    [(owned,)] = _fetch(
        "SELECT count(*) FROM pg_class WHERE relowner = (SELECT oid FROM pg_roles WHERE rolname = %s)", [current_user]
    )
    assert owned == 0
    with pytest.raises(ProgrammingError), transaction.atomic():
        _execute("ALTER TABLE crm_company DISABLE ROW LEVEL SECURITY")  # only the owner could


def test_a_connection_that_cannot_take_the_app_role_is_closed_not_used(db, settings):
    settings.DB_APP_ROLE = "axiomatic_no_such_role"
    fresh = connections.create_connection("default")
    try:
        with pytest.raises(DatabaseError):
            fresh.ensure_connection()
        assert fresh.connection is None  # never left acting as its (superuser) login user
    finally:
        fresh.close()


# --- requests: the API, the pages, and a view that names no entity ----------------------------


@pytest.mark.urls("tests.rls_urls")
def test_an_unscoped_query_in_an_api_request_sees_only_the_requests_entity(api, companies, other_entity):
    response = api.get("/api/crm/test-rls-unscoped", {"foreignEntity": str(other_entity.pk)})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["seen"] == ["Ours"]
    assert RLS_VIOLATION in body["insert"]  # an INSERT for entity B while A is set is refused
    assert (body["updated"], body["deleted"]) == (0, 0)
    assert Company.objects.for_entity(other_entity).get().name == "Theirs"


@pytest.mark.urls("tests.rls_urls")
def test_an_unscoped_query_in_a_page_sees_only_the_pages_entity(signed_in, companies, other_entity):
    response = signed_in.get("/test-rls/page", {"foreignEntity": str(other_entity.pk)})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["seen"] == ["Ours"]
    assert RLS_VIOLATION in body["insert"]
    assert (body["updated"], body["deleted"]) == (0, 0)


@pytest.mark.urls("tests.rls_urls")
def test_a_request_that_names_no_entity_sees_no_tenant_rows(client, companies, entity):
    body = client.get("/test-rls/no-entity", {"foreignEntity": str(entity.pk)}).json()
    assert body["seen"] == []
    assert RLS_VIOLATION in body["insert"]
    assert (body["updated"], body["deleted"]) == (0, 0)


def test_an_api_key_of_another_entity_is_still_a_403_and_a_wrong_key_a_401(api, other_entity):
    assert api.get("/companies", entity_id=str(other_entity.pk)).status_code == 403
    api.secret = api.secret[:-4] + "xxxx"
    assert api.get("/companies").status_code == 401


# --- the service layer: entity set, none, the named bypass ------------------------------------


def test_with_the_entity_set_only_its_rows_and_writes_for_another_entity_fail(companies, entity, other_entity):
    with app_context(), transaction.atomic():
        assert enter_entity(entity.pk)
        assert list(Company.objects.values_list("name", flat=True)) == ["Ours"]
        assert set(Membership.objects.values_list("entity_id", flat=True)) == {entity.pk}
        assert set(ApiKey.objects.values_list("entity_id", flat=True)) <= {entity.pk}
        with pytest.raises(ProgrammingError, match=RLS_VIOLATION), transaction.atomic():
            Company.objects.create(entity=other_entity, name="Smuggled")


def test_the_policy_reads_its_settings_once_per_statement_not_once_per_row(companies, entity):
    """The settings are InitPlans (parameters `$n` in the row filter): a `current_setting()` call
    in the filter itself would run for every row a count or a deep page reads."""
    with app_context(), transaction.atomic():
        assert enter_entity(entity.pk)
        plan = "\n".join(row[0] for row in _fetch("EXPLAIN SELECT count(*) FROM crm_company"))
    assert "InitPlan" in plan
    filters = [line for line in plan.splitlines() if "Filter:" in line]
    assert filters and not any("current_setting" in line for line in filters), plan


def test_with_no_entity_set_no_rows_and_no_writes(companies, entity):
    with app_context(), transaction.atomic():
        assert Company.objects.count() == 0
        assert Membership.objects.count() == 0
        assert PipelineStage.objects.count() == 0
        with pytest.raises(ProgrammingError, match=RLS_VIOLATION), transaction.atomic():
            Company.objects.create(entity=entity, name="Nowhere")


def test_the_named_bypass_shows_every_entity_and_ends_with_its_block(companies, entity):
    with app_context(), transaction.atomic():
        enter_entity(entity.pk)
        with rls.bypass_rls("test: the bypass is seen"):
            assert sorted(Company.objects.values_list("name", flat=True)) == ["Ours", "Theirs"]
        assert list(Company.objects.values_list("name", flat=True)) == ["Ours"]  # the entity is still set
        with pytest.raises(ValueError), rls.bypass_rls(" "):
            pass


def test_outside_a_transaction_the_bypass_holds_for_its_block_only(transactional_db, companies):
    with app_context():
        with rls.bypass_rls("test: autocommit"):
            assert set(Company.objects.values_list("name", flat=True)) >= {"Ours", "Theirs"}
            with transaction.atomic():
                assert set(Company.objects.values_list("name", flat=True)) >= {"Ours", "Theirs"}
        assert Company.objects.count() == 0
        [(value,)] = _fetch("SELECT current_setting('app.rls_bypass', true)")
        assert value == ""


def test_entity_scope_outside_a_transaction_as_a_task_uses_it(transactional_db, companies, entity, other_entity):
    theirs = Company.objects.for_entity(other_entity).get()
    with app_context():
        assert rls.row_entity_id(Company, theirs.pk) == other_entity.pk  # read under the bypass
        with rls.entity_scope(rls.row_entity_id(Company, theirs.pk)):
            assert list(Company.objects.values_list("name", flat=True)) == ["Theirs"]
            with transaction.atomic():  # a transaction inside the task sees the same entity
                Company.objects.filter(pk=theirs.pk).update(name="Theirs, renamed")
        assert Company.objects.count() == 0
    assert Company.objects.get(pk=theirs.pk).name == "Theirs, renamed"


def test_the_send_task_works_in_its_emails_entity(transactional_db, entity, other_entity):
    """The task gets only an id: it reads the row's entity (bypass) and works there. Without that,
    its claim (an UPDATE) would match no row and the email would be `skipped`, not `failed`."""
    email = OutboundEmail.objects.create(
        entity=other_entity, channel="gmail", from_address="me@example.com", subject="Hi", to_addresses=["a@b.c"]
    )
    OutboundEmail.objects.create(entity=entity, channel="gmail", from_address="me@example.com", subject="Ours")
    outcome = send_outbound_email.apply(args=[str(email.pk)]).get()  # eager: runs as the app (rls_support)
    assert outcome == "failed"  # no mailbox connection: a permanent failure, recorded on the row
    email.refresh_from_db()
    assert (email.status, email.attempts) == (EmailStatus.FAILED, 1)


# --- operator commands, the admin, migrations ---------------------------------------------------


def test_operator_commands_run_under_the_named_bypass(db):
    with app_context():
        call_command("create_entity", "Made by an operator", "--owner-email", "operator@example.com")
        with transaction.atomic():
            assert Company.objects.count() == 0  # the command's bypass ended with it
    entity = Entity.objects.get(name="Made by an operator")
    assert PipelineStage.objects.for_entity(entity).exists()  # written by the command, across entities
    assert Membership.objects.filter(entity=entity, role="owner").exists()


def test_the_staff_admin_sees_every_entity(staff_client, companies):
    response = staff_client.get("/admin/crm/company/")
    assert response.status_code == 200
    assert b"Ours" in response.content and b"Theirs" in response.content


def test_migrate_reapplies_rls_to_a_table_that_lost_it_and_is_idempotent(db):
    with rls.owner_session():
        [(current_user,)] = _fetch("SELECT current_user")
        assert current_user == connection.settings_dict["USER"]
        assert rls.rls_install(connection, apps.get_models()) == []  # nothing to change
        _execute(f"DROP POLICY {rls.POLICY_NAME} ON crm_company")
        _execute("ALTER TABLE crm_company NO FORCE ROW LEVEL SECURITY")
        rls.on_post_migrate(sender=None, using="default", apps=apps)
        [(forced, policies)] = _fetch(
            "SELECT relforcerowsecurity, (SELECT count(*) FROM pg_policies WHERE tablename = 'crm_company') "
            "FROM pg_class WHERE relname = 'crm_company'"
        )
        assert (forced, policies) == (True, 1)
    [(current_user,)] = _fetch("SELECT current_user")
    assert current_user == settings.DB_APP_ROLE  # back to the app role after migrate
