"""Celery signal receivers: request ids into tasks, task metrics, the worker's statement timeout.

Connected when the Celery app is created (axiomatic/celery.py), so in every process: the web (which
publishes) and the worker (which runs). Nothing here touches Django at import time.

- `before_task_publish`: the current request id (axiomatic.logging) goes into the message headers;
- `task_prerun` / `task_postrun`: a worker binds that id for the task's log lines (and for the
  tasks it queues in turn), and times the run; eager tasks keep the id of the request running them;
- `task_success` / `task_failure` / `task_retry`: `axiomatic_celery_tasks_total{task,outcome}`;
- `celeryd_init` / `beat_init`: the process runs tasks, so its database connections use
  `DB_TASK_STATEMENT_TIMEOUT_MS` instead of the web's `DB_STATEMENT_TIMEOUT_MS`.
"""

from __future__ import annotations

import time

from celery import signals

from axiomatic.logging import bind_request_id, current_request_id, unbind_request_id

HEADER = "axiomatic_request_id"
_STATE = "_axiomatic_ops"


@signals.before_task_publish.connect(weak=False)
def add_request_id_header(sender=None, headers=None, **kwargs) -> None:
    request_id = current_request_id()
    if request_id and headers is not None:
        headers.setdefault(HEADER, request_id)


def _header(task) -> str | None:
    request = getattr(task, "request", None)
    if request is None:
        return None
    value = getattr(request, HEADER, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(HEADER)
    return value if isinstance(value, str) else None


@signals.task_prerun.connect(weak=False)
def bind_task_context(sender=None, task_id=None, task=None, **kwargs) -> None:
    task = task or sender
    if task is None:
        return
    request_id = _header(task)
    token = bind_request_id(request_id) if request_id and not task.request.is_eager else None
    setattr(task.request, _STATE, (token, time.perf_counter()))


@signals.task_postrun.connect(weak=False)
def unbind_task_context(sender=None, task_id=None, task=None, **kwargs) -> None:
    task = task or sender
    state = getattr(getattr(task, "request", None), _STATE, None)
    if state is None:
        return
    token, _started = state
    if token is not None:
        unbind_request_id(token)


def _duration(task) -> float | None:
    state = getattr(getattr(task, "request", None), _STATE, None)
    return time.perf_counter() - state[1] if state else None


@signals.task_success.connect(weak=False)
def count_success(sender=None, **kwargs) -> None:
    from axiomatic.metrics import record_task

    record_task(sender.name, "succeeded", _duration(sender))


@signals.task_failure.connect(weak=False)
def count_failure(sender=None, **kwargs) -> None:
    from axiomatic.metrics import record_task

    record_task(sender.name, "failed", _duration(sender))


@signals.task_retry.connect(weak=False)
def count_retry(sender=None, **kwargs) -> None:
    from axiomatic.metrics import record_task

    record_task(sender.name, "retried", _duration(sender))


@signals.celeryd_init.connect(weak=False)
@signals.beat_init.connect(weak=False)
def mark_task_process(**kwargs) -> None:
    from axiomatic.ops.database import TASK, set_process_role

    set_process_role(TASK)
