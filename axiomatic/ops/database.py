"""The database as an operator sees it: is it away, and how long may one statement run.

`is_database_unavailable(exc)` tells the errors that mean "the database cannot serve right now"
(refused, timed out, connection dropped, statement cancelled by `statement_timeout`, too many
connections, pool exhausted) from programming errors: the former answer 503 with `Retry-After`,
never 500 (axiomatic.ops.middleware).

Statement timeouts: web processes get `DB_STATEMENT_TIMEOUT_MS` from the connection's startup
options (settings). A Celery worker or beat process (`set_process_role("task")`, from the Celery
signals) and management commands (`manage.py migrate`, ...) replace it once per new connection
with `DB_TASK_STATEMENT_TIMEOUT_MS` (tasks) or no limit (commands: a migration may build an index
for minutes).
"""

from __future__ import annotations

import os
import sys

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connections
from django.db.backends.base.base import NO_DB_ALIAS

from axiomatic.db import is_postgres

WEB, TASK, COMMAND = "web", "task", "command"
_role: str | None = None
# `manage.py runserver` serves web requests; any other command is a command.
_WEB_COMMANDS = {"runserver", "testserver"}
_TIMEOUT_MARK = "_axiomatic_statement_timeout"  # on a raw (possibly pooled) connection


def is_database_unavailable(exc: BaseException | None) -> bool:
    """Django's wrapped OperationalError/InterfaceError (psycopg's connection, timeout, cancel,
    admin-shutdown and pool errors all map to these); IntegrityError and friends are not."""
    return isinstance(exc, OperationalError | InterfaceError)


def set_process_role(role: str | None) -> None:
    """Declare what this process does (WEB, TASK or COMMAND); None goes back to guessing."""
    global _role
    _role = role


def process_role() -> str:
    if _role is not None:
        return _role
    program = os.path.basename(sys.argv[0]) if sys.argv else ""
    if program in ("manage.py", "django-admin") and len(sys.argv) > 1 and sys.argv[1] not in _WEB_COMMANDS:
        return COMMAND
    return WEB


def statement_timeout_ms(role: str | None = None) -> int | None:
    """The timeout for connections of `role` (default: this process's); None: the startup option."""
    role = role or process_role()
    if role == TASK:
        return settings.DB_TASK_STATEMENT_TIMEOUT_MS
    if role == COMMAND:
        return 0
    return None


def _set_statement_timeout(connection, timeout_ms: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('statement_timeout', %s, false)", [str(int(timeout_ms))])
    setattr(connection.connection, _TIMEOUT_MARK, timeout_ms)


def on_connection_created(sender, connection, **kwargs) -> None:
    """`connection_created`: outside web processes, replace the web statement timeout. The
    maintenance connection (CREATE/DROP DATABASE, e.g. for the test database) has none."""
    if not is_postgres(connection):
        return
    timeout = 0 if connection.alias == NO_DB_ALIAS else statement_timeout_ms()
    if timeout is None or getattr(connection.connection, _TIMEOUT_MARK, None) == timeout:
        return  # a pooled connection handed out again kept its session setting
    _set_statement_timeout(connection, timeout)


def on_pre_migrate(sender, using=DEFAULT_DB_ALIAS, **kwargs) -> None:
    """Migrations run without a statement timeout, whichever process runs them (e.g. the test
    database's set-up inside pytest); `on_post_migrate` puts the process's own back."""
    connection = connections[using]
    if is_postgres(connection):
        _set_statement_timeout(connection, 0)


def on_post_migrate(sender, using=DEFAULT_DB_ALIAS, **kwargs) -> None:
    connection = connections[using]
    if is_postgres(connection):
        timeout = statement_timeout_ms()
        _set_statement_timeout(connection, settings.DB_STATEMENT_TIMEOUT_MS if timeout is None else timeout)
