"""Celery tasks of the CSV import (registered by `crm.apps`, found by name by the service).

`run_import` is safe to deliver twice or to resume after a crash: it first claims the job
(`crm.services.imports.import_claim`), which refuses a job held by a live run, and every chunk
commits its writes together with the checkpoint. It hands over to a continuation after
`IMPORT_RUN_SECONDS`, far below its time limits, so a long import never hits them.
`resume_stalled_imports` (periodic, and once shortly after a worker starts) re-queues imports
whose worker died and queued ones whose message was lost.
"""

from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings

from axiomatic.celery import app
from axiomatic.rls import bypass_rls, entity_scope, row_entity_id
from crm.bulk.importer import import_run
from crm.models import Import
from crm.services.imports import RUN_TASK, import_kick, imports_stalled

logger = logging.getLogger("crm.imports")

RUN_SOFT_TIME_LIMIT = 150
RUN_TIME_LIMIT = 180
RESUME_INTERVAL_SECONDS = 60.0


@shared_task(name=RUN_TASK, acks_late=True, soft_time_limit=RUN_SOFT_TIME_LIMIT, time_limit=RUN_TIME_LIMIT)
def run_import(import_id: str, token: str | None = None) -> str:
    """Apply the import's next chunks; queue the continuation, or the entity's next import."""
    entity_id = row_entity_id(Import, import_id)
    if entity_id is None:
        return "gone"
    with entity_scope(entity_id):
        result = import_run(import_id=import_id, token=token)
        if result.state == "continue":
            run_import.apply_async((import_id, result.token))
        elif result.state == "finished":
            import_kick(entity_id=entity_id)
    return result.state


@shared_task(name="crm.resume_stalled_imports", ignore_result=True, soft_time_limit=60, time_limit=90)
def resume_stalled_imports() -> int:
    """Kick every entity with a stalled running import or a queued one nobody started."""
    with bypass_rls("stalled-import check: looks at the imports of every entity"):
        entity_ids = imports_stalled()
    for entity_id in entity_ids:
        with entity_scope(entity_id):
            import_kick(entity_id=entity_id)
    return len(entity_ids)


@worker_ready.connect
def _resume_after_start(sender=None, **kwargs) -> None:
    """A worker that starts looks for imports a dead worker left, once they count as stalled."""
    try:
        resume_stalled_imports.apply_async(countdown=settings.IMPORT_STALE_SECONDS + 1)
    except Exception:
        logger.warning("Could not schedule the stalled-import check", exc_info=True)


app.conf.beat_schedule = {
    **app.conf.beat_schedule,
    "crm-resume-stalled-imports": {"task": "crm.resume_stalled_imports", "schedule": RESUME_INTERVAL_SECONDS},
}
