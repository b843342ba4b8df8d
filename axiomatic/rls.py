"""PostgreSQL row-level security: the database's backstop behind the ORM's entity filters.

The ORM scopes every query to the request's entity (`TenantQuerySet.for_entity`, the base API
viewset); this module makes PostgreSQL refuse the rows of other entities even when a query
forgets to. PostgreSQL only: on SQLite (the zero-setup demo) every function here does nothing.

What the database enforces:

- Every table with an `entity_id` column has ROW LEVEL SECURITY enabled and forced, with one
  policy (`entity_isolation`): a row is visible, updatable, deletable and insertable only when
  its `entity_id` equals the transaction's `app.entity_id` (`axiomatic.tenancy.database.enter_entity`,
  one query per request), or is one of the transaction's `app.entity_ids` (`entities_scope`: the staff
  admin of a user who is not a superuser, who sees the entities they administer and no other) —
  or while the one named bypass, `app.rls_bypass = 'on'`, is set, which only `bypass_rls(reason)`
  does. No entity and no bypass: no rows, and every INSERT is refused.
- The application's queries run as `settings.DB_APP_ROLE` (default `axiomatic_app`): a role that
  owns no table, is not a superuser and has no BYPASSRLS, entered with `SET ROLE` once per new
  connection (`on_connection_created`), also when DATABASE_URL names a superuser.
- `manage.py migrate` (axiomatic/management/commands/migrate.py) runs as the user it connected
  as (the tables' owner): it resets the role first (`owner_session`), and afterwards re-applies
  role, grants and policies to every tenant table (`on_post_migrate`, idempotent), so a tenant
  table added by any later migration is covered the same day.

Where the bypass is used (each call names its reason): the API key lookup when the key is not
in the entity the request names, the pages' entity switcher, the superuser's staff admin (other
staff run in `entities_scope`; the bypass only finds which entities they administer and whether
a user they would change belongs to entities they do not own), the operator commands,
migrations and `flush`, the stuck-email check, and a task reading which entity its row is in.

The application role has no TRUNCATE (it ignores row-level security); `flush` (tests, operators
resetting a database) runs as the tables' owner like `migrate`.

The bypass is a transaction setting any SQL on the connection could set: this is a guard against
a forgotten ORM filter, not against SQL injection.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.backends.base.base import NO_DB_ALIAS

from axiomatic.db import is_postgres, read_alias

logger = logging.getLogger("axiomatic.rls")

ENTITY_SETTING = "app.entity_id"
# The staff admin's entities for a staff user who is not a superuser: a PostgreSQL array literal.
ENTITY_LIST_SETTING = "app.entity_ids"
BYPASS_SETTING = "app.rls_bypass"
ENTITY_COLUMN = "entity_id"
POLICY_NAME = "entity_isolation"
# Stored as the policy's comment: a policy whose comment differs is rewritten by the next migrate.
POLICY_VERSION = "axiomatic-rls-3"
# Each setting is read in a scalar subquery, which PostgreSQL evaluates once per statement (an
# InitPlan) and compares as a parameter; a bare current_setting() would be called for every row
# the statement reads, which tripled the cost of counting tens of thousands of index entries.
POLICY_EXPRESSION = (
    f"(SELECT current_setting('{BYPASS_SETTING}', true)) = 'on'"
    f" OR {ENTITY_COLUMN} = (SELECT nullif(current_setting('{ENTITY_SETTING}', true), '')::uuid)"
    f" OR {ENTITY_COLUMN} = ANY ((SELECT nullif(current_setting('{ENTITY_LIST_SETTING}', true), ''))::uuid[])"
)
MIGRATION = ("axiomatic", "0003_row_level_security")
ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# Aliases whose connection currently acts as its login user (the owner), i.e. inside `migrate`.
_owner_aliases: set[str] = set()
# Aliases inside `flush`: owner too, but its post_migrate signal need not re-apply policies.
_flush_aliases: set[str] = set()
_ROLE_MARK = "_axiomatic_app_role"  # on a raw (possibly pooled) connection that already did SET ROLE


def app_role() -> str:
    """The role the application's queries run as; "" disables SET ROLE (not recommended)."""
    role = (getattr(settings, "DB_APP_ROLE", "") or "").strip()
    if role and not ROLE_NAME.match(role):
        raise ImproperlyConfigured(f"DB_APP_ROLE must be a lower-case SQL identifier, got {role!r}")
    return role


def _is_postgresql(connection) -> bool:
    return is_postgres(connection)


# --- the named bypass and the entity scope --------------------------------------------------


def _discard(connection) -> None:
    """Close a connection whose session settings could not be restored, so nobody reuses it
    (with a pool, the closed raw connection is dropped by the pool rather than handed out)."""
    raw = connection.connection
    try:
        if raw is not None:
            raw.close()
    finally:
        connection.close()


class Scope:
    """What a `bypass_rls` / `entity_scope` block yields."""

    def __init__(self, *, local: bool = False):
        self._local = local
        self.entity_after: str | None = None

    def enter_entity_after(self, entity_id) -> bool:
        """Make `entity_id` the transaction's entity when the block ends, in the same statement
        that ends it (one query fewer than `enter_entity` after the block); it then
        lasts until the transaction ends. Like `enter_entity`, nothing outside a
        transaction (False)."""
        if not self._local:
            return False
        self.entity_after = str(entity_id)
        return True


@contextmanager
def _setting(connection, name: str, value: str) -> Iterator[Scope]:
    """`name` = `value` for the block, then back to what it was.

    Inside a transaction the change is transaction-local (it can never outlive the transaction);
    outside one (autocommit: tasks, commands, middleware) it holds for the session until the block
    ends, and a session that cannot be reset is closed rather than reused.
    """
    local = connection.in_atomic_block
    with connection.cursor() as cursor:
        # The target list is evaluated left to right: the old value first, then the change.
        cursor.execute("SELECT current_setting(%s, true), set_config(%s, %s, %s)", [name, name, value, local])
        previous = cursor.fetchone()[0] or ""
    scope = Scope(local=bool(local))
    try:
        yield scope
    finally:
        if local and connection.needs_rollback:
            pass  # the enclosing atomic block rolls back, and the setting with it
        elif connection.connection is None:
            pass  # the session ended inside the block; a new one starts without the setting
        else:
            sql, params = "SELECT set_config(%s, %s, %s)", [name, previous, local]
            if scope.entity_after is not None:
                sql, params = sql + ", set_config(%s, %s, true)", [*params, ENTITY_SETTING, scope.entity_after]
            try:
                with connection.cursor() as cursor:
                    cursor.execute(sql, params)
            except Exception:
                if local:
                    connection.set_rollback(True)
                else:
                    _discard(connection)
                raise


@contextmanager
def bypass_rls(reason: str, *, using: str | None = None) -> Iterator[Scope]:
    """The one way past row-level security: every entity's rows for the block's statements.

    `reason` names the caller's need (kept in debug logs); usable as a decorator too. Inside a
    transaction it costs two queries (on, then back), outside one it holds for the session until
    the block ends. Yields a `Scope` (`enter_entity_after`). Without `using`, on the connection the
    code reads from (the replica on a read path routed there, `axiomatic.replica`), as the scopes.
    """
    if not reason or not reason.strip():
        raise ValueError("bypass_rls() needs the reason it is used")
    connection = connections[using or read_alias()]
    if not _is_postgresql(connection):
        yield Scope()
        return
    logger.debug("Row-level security bypassed: %s", reason)
    with _setting(connection, BYPASS_SETTING, "on") as scope:
        yield scope


@contextmanager
def entity_scope(entity_id, *, using: str | None = None) -> Iterator[Scope]:
    """The block's statements act in `entity_id` (None: in no entity), then back to before.

    For work outside a request's transaction that spans several transactions (a Celery task, the
    mailbox callback that talks to the provider between queries). In a request use
    `axiomatic.tenancy.database.enter_entity`, which lasts until the transaction ends.
    """
    connection = connections[using or read_alias()]
    if not _is_postgresql(connection):
        yield Scope()
        return
    with _setting(connection, ENTITY_SETTING, str(entity_id) if entity_id else "") as scope:
        yield scope


@contextmanager
def entities_scope(entity_ids: Iterable, *, using: str | None = None) -> Iterator[Scope]:
    """The block's statements see the rows of exactly these entities (none when empty).

    For the staff admin of a user who is not a superuser: they administer a few entities and
    may see all of them at once, but no other. A forgotten scope in an admin class is then
    refused by PostgreSQL too, rather than shown (the superuser's admin keeps the bypass).
    """
    connection = connections[using or read_alias()]
    if not _is_postgresql(connection):
        yield Scope()
        return
    value = "{" + ",".join(str(uuid.UUID(str(entity_id))) for entity_id in entity_ids) + "}"
    with _setting(connection, ENTITY_LIST_SETTING, value) as scope:
        yield scope


def row_entity_id(model, pk, *, using: str = DEFAULT_DB_ALIAS) -> uuid.UUID | None:
    """The entity a tenant row belongs to (None if it is gone): how a task that is given only a
    row's id learns which entity to work in (`with entity_scope(row_entity_id(Model, pk)):`)."""
    with bypass_rls("a task reads which entity the row it was given belongs to", using=using):
        return model._base_manager.using(using).filter(pk=pk).values_list(ENTITY_COLUMN, flat=True).first()


# --- the application role, entered on every new connection ----------------------------------


def _enter_app_role(connection, role: str) -> None:
    raw = connection.connection
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SET ROLE {connection.ops.quote_name(role)}")
    except Exception:
        _discard(connection)  # never leave a connection acting as its (maybe superuser) login user
        raise
    setattr(raw, _ROLE_MARK, role)


def on_connection_created(sender, connection, **kwargs) -> None:
    """`connection_created`: the application's connections act as DB_APP_ROLE.

    Once per physical connection: a pooled connection handed out again kept its session's role.
    Skipped for the maintenance connection of test-database creation and inside `migrate`.
    """
    if not _is_postgresql(connection) or connection.alias == NO_DB_ALIAS or connection.alias in _owner_aliases:
        return
    role = app_role()
    if not role or getattr(connection.connection, _ROLE_MARK, None) == role:
        return
    _enter_app_role(connection, role)


@contextmanager
def owner_session(using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """The connection as the user it logged in as (the tables' owner), with the bypass on, for
    `migrate`: DDL needs the owner, and data migrations read every entity. Back to DB_APP_ROLE after."""
    connection = connections[using]
    if not _is_postgresql(connection):
        yield
        return
    _owner_aliases.add(using)
    try:
        if connection.connection is not None:
            with connection.cursor() as cursor:
                cursor.execute("RESET ROLE")
            setattr(connection.connection, _ROLE_MARK, None)
        with bypass_rls("migrations run as the tables' owner and read every entity", using=using):
            yield
    except BaseException:
        _owner_aliases.discard(using)
        if connection.connection is not None:
            _discard(connection)  # never reused as the owner; the next connection takes the app role
        raise
    _owner_aliases.discard(using)
    role = app_role()
    if role and connection.connection is not None:
        _enter_app_role(connection, role)


# --- installing role, grants and policies (the migration and every later migrate) -----------


def tenant_tables(models: Iterable) -> list[str]:
    """The tables of `models` that have an `entity_id` column."""
    return sorted(
        {
            model._meta.db_table
            for model in models
            if model._meta.managed
            and not model._meta.proxy
            and any(field.column == ENTITY_COLUMN for field in model._meta.local_concrete_fields)
        }
    )


def _role_setup_sql(role: str) -> str:
    return f"CREATE ROLE {role} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT"


def _ensure_role(cursor, connection, role: str) -> None:
    quoted = connection.ops.quote_name(role)
    cursor.execute("SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user")
    is_superuser, can_create_roles = cursor.fetchone()
    cursor.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = %s", [role])
    found = cursor.fetchone()
    if found is None:
        if not (is_superuser or can_create_roles):
            raise ImproperlyConfigured(
                f"The database role {role!r} (DB_APP_ROLE) does not exist and the migrating user may not "
                f"create roles. As a superuser run: {_role_setup_sql(quoted)}; GRANT {quoted} TO <the app's "
                "login user>;  (README: row-level security)"
            )
        # Two migrations at once (test workers) may both try: the loser finds it made.
        cursor.execute(
            f"DO $$ BEGIN {_role_setup_sql(quoted)}; "
            "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
        )
    elif found[0] or found[1]:
        raise ImproperlyConfigured(f"DB_APP_ROLE {role!r} must be neither a superuser nor BYPASSRLS.")
    cursor.execute("SELECT session_user = %s", [role])
    if cursor.fetchone()[0]:
        raise ImproperlyConfigured(
            f"DB_APP_ROLE {role!r} is the login user, which owns the tables; use a role of its own."
        )
    if not is_superuser:
        # PostgreSQL 16 separates "may SET ROLE" from membership; 15 has only membership.
        cursor.execute(
            "SELECT pg_has_role(session_user, %s, CASE WHEN current_setting('server_version_num')::int >= 160000 "
            "THEN 'SET' ELSE 'MEMBER' END)",
            [role],
        )
        if not cursor.fetchone()[0]:
            try:
                with transaction.atomic(using=connection.alias):
                    cursor.execute(f"GRANT {quoted} TO SESSION_USER")
            except Exception as exc:
                raise ImproperlyConfigured(
                    f"The login user cannot SET ROLE {role!r}: as a superuser run GRANT {quoted} TO <login user>."
                ) from exc


def _grant(cursor, connection, role: str) -> None:
    quoted = connection.ops.quote_name(role)
    cursor.execute("SELECT current_schema(), has_schema_privilege(%s, current_schema(), 'USAGE')", [role])
    schema, has_usage = cursor.fetchone()
    schema = connection.ops.quote_name(schema)
    if not has_usage:
        cursor.execute(f"GRANT USAGE ON SCHEMA {schema} TO {quoted}")
    # No TRUNCATE: it empties a table whatever the row-level security policy says.
    tables, sequences = "SELECT, INSERT, UPDATE, DELETE", "USAGE, SELECT, UPDATE"
    cursor.execute(f"REVOKE TRUNCATE ON ALL TABLES IN SCHEMA {schema} FROM {quoted}")
    cursor.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} REVOKE TRUNCATE ON TABLES FROM {quoted}")
    cursor.execute(f"GRANT {tables} ON ALL TABLES IN SCHEMA {schema} TO {quoted}")
    cursor.execute(f"GRANT {sequences} ON ALL SEQUENCES IN SCHEMA {schema} TO {quoted}")
    cursor.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT {tables} ON TABLES TO {quoted}")
    cursor.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT {sequences} ON SEQUENCES TO {quoted}")
    cursor.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
        "WHERE r.rolname = %s AND c.relnamespace = to_regnamespace(current_schema()) LIMIT 1",
        [role],
    )
    owned = cursor.fetchone()
    if owned:
        raise ImproperlyConfigured(f"DB_APP_ROLE {role!r} owns table {owned[0]!r}; the app role must own no table.")


def _secure_table(cursor, connection, table: str) -> bool:
    """RLS enabled and forced, and the current policy, on one table; True if anything changed.
    A table already in that state is not touched (ALTER TABLE would lock it)."""
    quoted = connection.ops.quote_name(table)
    cursor.execute(
        "SELECT c.relrowsecurity, c.relforcerowsecurity, p.oid IS NOT NULL, obj_description(p.oid, 'pg_policy') "
        "FROM pg_class c LEFT JOIN pg_policy p ON p.polrelid = c.oid AND p.polname = %s "
        "WHERE c.oid = to_regclass(%s)",
        [POLICY_NAME, quoted],
    )
    enabled, forced, has_policy, version = cursor.fetchone()
    if enabled and forced and has_policy and version == POLICY_VERSION:
        return False
    if not enabled:
        cursor.execute(f"ALTER TABLE {quoted} ENABLE ROW LEVEL SECURITY")
    if not forced:
        cursor.execute(f"ALTER TABLE {quoted} FORCE ROW LEVEL SECURITY")
    verb = "ALTER" if has_policy else "CREATE"
    cursor.execute(
        f"{verb} POLICY {POLICY_NAME} ON {quoted} USING ({POLICY_EXPRESSION}) WITH CHECK ({POLICY_EXPRESSION})"
    )
    cursor.execute(f"COMMENT ON POLICY {POLICY_NAME} ON {quoted} IS '{POLICY_VERSION}'")
    return True


def rls_install(connection, models: Iterable) -> list[str]:
    """Role (created if the migrating user may), grants, and RLS + policy on every existing tenant
    table of `models`; idempotent. Returns the tables it changed. Runs as the tables' owner."""
    if not _is_postgresql(connection):
        return []
    changed = []
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        role = app_role()
        if role:
            _ensure_role(cursor, connection, role)
            _grant(cursor, connection, role)
        existing = set(connection.introspection.table_names(cursor))
        for table in tenant_tables(models):
            if table in existing and _secure_table(cursor, connection, table):
                changed.append(table)
    return changed


def rls_uninstall(connection) -> None:
    """Undo the policies on every table that has one (the migration's reverse). The role and its
    grants stay: roles belong to the whole server, and other databases may use it."""
    if not _is_postgresql(connection):
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tablename FROM pg_policies WHERE schemaname = current_schema() AND policyname = %s", [POLICY_NAME]
        )
        for (table,) in cursor.fetchall():
            quoted = connection.ops.quote_name(table)
            cursor.execute(f"DROP POLICY {POLICY_NAME} ON {quoted}")
            cursor.execute(f"ALTER TABLE {quoted} NO FORCE ROW LEVEL SECURITY")
            cursor.execute(f"ALTER TABLE {quoted} DISABLE ROW LEVEL SECURITY")


@contextmanager
def flush_session(using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """`owner_session` for `flush`, which TRUNCATEs every table: a right the app role lacks."""
    _flush_aliases.add(using)
    try:
        with owner_session(using):
            yield
    finally:
        _flush_aliases.discard(using)


def on_post_migrate(sender, using=DEFAULT_DB_ALIAS, apps=None, **kwargs) -> None:
    """After every `migrate` (not after `flush`, which also sends post_migrate): the same install
    over all tenant tables, so one added by a later migration of any app is covered. Only once
    the RLS migration is applied (migrating back before it removes RLS)."""
    from django.apps import apps as global_apps
    from django.db.migrations.recorder import MigrationRecorder

    connection = connections[using]
    if not _is_postgresql(connection) or using not in _owner_aliases or using in _flush_aliases:
        return
    if MIGRATION not in MigrationRecorder(connection).applied_migrations():
        return
    changed = rls_install(connection, (apps or global_apps).get_models())
    if changed:
        logger.info("Row-level security applied to %s", ", ".join(changed))
