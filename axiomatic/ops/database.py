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
from django.db import InterfaceError, OperationalError

WEB, TASK, COMMAND = "web", "task", "command"
_role: str | None = None
# `manage.py runserver` serves web requests; any other command is a command.
_WEB_COMMANDS = {"runserver", "testserver"}


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


def on_connection_created(sender, connection, **kwargs) -> None:
    """`connection_created`: outside web processes, replace the web statement timeout."""
    if connection.vendor != "postgresql":
        return
    timeout = statement_timeout_ms()
    if timeout is None:
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('statement_timeout', %s, false)", [str(int(timeout))])
