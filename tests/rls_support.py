"""Row-level security in the tests: test code sets up and inspects every entity; the app does not.

Tests build rows of several entities and assert on them directly with the ORM, as an operator
would, so connections opened by test code (in any thread) run with the named bypass on for their
session. Application code runs exactly as in production, as DB_APP_ROLE with no entity and no
bypass until its own code sets one: every request through Django's test client, every request the
live server (browser tests) handles and every Celery task (the worker thread, or eager) turns the
bypass off and clears `app.entity_id` first, then puts back what test code had. The toggles use
the raw psycopg connection, so `django_assert_num_queries` does not count them.

`app_context()` does the same for code a test calls directly (services, commands).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

from celery import signals as celery_signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.signals import connection_created
from django.test.client import ClientHandler

from axiomatic.rls import BYPASS_SETTING, ENTITY_SETTING

_state = threading.local()  # per thread: `stack` of saved bypass states, `bypass` (believed on)


def _stack() -> list[bool]:
    if not hasattr(_state, "stack"):
        _state.stack = []
    return _state.stack


def _set(*, bypass: bool, clear_entity: bool = False) -> None:
    connection = connections[DEFAULT_DB_ALIAS]
    raw = connection.connection
    if connection.vendor == "postgresql" and raw is not None and not raw.closed:
        sql = "SELECT set_config(%s, %s, false)"
        params = [BYPASS_SETTING, "on" if bypass else ""]
        if clear_entity:
            sql += ", set_config(%s, '', false)"
            params.append(ENTITY_SETTING)
        raw.execute(sql, params)
    _state.bypass = bypass


def _on_connection_created(sender, connection, **kwargs) -> None:
    """A connection opened by test code starts with the bypass on; one opened by app code, off."""
    if connection.alias != DEFAULT_DB_ALIAS:
        return
    if _stack():
        _state.bypass = False
    else:
        _set(bypass=True)


def _enter() -> None:
    stack = _stack()
    stack.append(getattr(_state, "bypass", False))
    if len(stack) == 1:  # from test code; nested app code (an eager task in a task) keeps its scope
        _set(bypass=False, clear_entity=True)


def _exit() -> None:
    stack = _stack()
    if stack and stack.pop() and not stack:
        _set(bypass=True)


@contextmanager
def app_context():
    """Run the block as the application would: no bypass, no entity (then back)."""
    _enter()
    try:
        yield
    finally:
        _exit()


def _as_app(call):
    def wrapper(self, *args, **kwargs):
        with app_context():
            return call(self, *args, **kwargs)

    wrapper.__wrapped__ = call
    return wrapper


def _task_started(**kwargs) -> None:
    _enter()


def _task_finished(**kwargs) -> None:
    _exit()


def install() -> None:
    """Called once from tests/conftest.py."""
    connection_created.connect(_on_connection_created, weak=False, dispatch_uid="tests-rls-bypass")
    ClientHandler.__call__ = _as_app(ClientHandler.__call__)  # the test client
    WSGIHandler.__call__ = _as_app(WSGIHandler.__call__)  # the live server
    celery_signals.task_prerun.connect(_task_started, weak=False, dispatch_uid="tests-rls-task-start")
    celery_signals.task_postrun.connect(_task_finished, weak=False, dispatch_uid="tests-rls-task-end")
