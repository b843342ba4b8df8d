"""gunicorn settings for the web process (docs/operations.md):

    gunicorn -c gunicorn.conf.py axiomatic.wsgi:application

Every value can be changed from the environment. The timeouts agree with the database's:
`timeout` (a worker silent that long is killed) is well above `DB_STATEMENT_TIMEOUT_MS`, so a slow
query is cancelled by PostgreSQL and answered 503 before gunicorn would kill the worker mid-request;
on SIGTERM the workers finish their in-flight requests for up to `graceful_timeout` seconds (give
the orchestrator a longer termination grace period than that).
"""

from __future__ import annotations

import math
import os
import shutil


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


_statement_timeout_seconds = _int("DB_STATEMENT_TIMEOUT_MS", 5000) / 1000

bind = os.environ.get("GUNICORN_BIND") or f"0.0.0.0:{_int('PORT', 8000)}"
# CPUs this process may use (a container's cpuset, not the host's count); set WEB_CONCURRENCY under a CPU quota.
_cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
# One worker per CPU with two threads each, chosen by measurement (issue 27): companies page 1 on
# a 2-core machine shared with PostgreSQL and the load generator (wrk, 8 clients, runs alternated,
# load average 2.6–4): sync ×3 161–186 req/s at 5.1–5.3 CPU ms a request, sync ×4 158–198 req/s at
# 5.3–5.9 ms, sync ×5 (the old 2 × CPUs + 1) 231 req/s at 6.0 ms; gthread 2 × 2 218–318 req/s at
# 4.6–4.8 ms, gthread 3 × 2 203–237 req/s at 4.6–4.8 ms. Threads keep a client's connection alive
# (a sync worker closes each one), and fewer processes contend less for the cores the database
# shares. A request that waits on the database frees its core for the other thread.
workers = _int("WEB_CONCURRENCY", _cpus)
threads = _int("GUNICORN_THREADS", 2)
worker_class = "gthread" if threads > 1 else "sync"

# A request may run several statements, each bounded by the statement timeout.
timeout = _int("GUNICORN_TIMEOUT", max(30, math.ceil(_statement_timeout_seconds * 4)))
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", timeout)
keepalive = _int("GUNICORN_KEEPALIVE", 5)

# Recycle workers now and then (memory growth), not all at once.
max_requests = _int("GUNICORN_MAX_REQUESTS", 2000)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 200)

# The app writes one JSON line per request (axiomatic.access); gunicorn's own access log stays off.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# gunicorn's own lines (boot, worker timeouts) in the app's format: JSON unless LOG_FORMAT=text
# (or, LOG_FORMAT unset, DEBUG=1), like the settings; see on_starting.
_debug = os.environ.get("DEBUG", "0").strip().lower() in ("1", "true", "yes", "on")
_json_logs = (os.environ.get("LOG_FORMAT") or ("text" if _debug else "json")).strip().lower() == "json"
# Heartbeat files in memory, not on a (possibly slow or read-only) container disk.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# No control socket: it would be one per user in ~/.gunicorn, shared by every gunicorn of the machine.
control_socket_disable = True
# Proxies allowed to set X-Forwarded-* (comma-separated addresses, `*` for any).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")


def on_starting(server):
    """JSON for gunicorn's own log lines; Prometheus multiprocess mode: start from an empty
    directory (old files would be added up)."""
    if _json_logs:
        from axiomatic.logging import JsonFormatter

        for handler in server.log.error_log.handlers:
            handler.setFormatter(JsonFormatter())
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        os.makedirs(directory, exist_ok=True)
        for name in os.listdir(directory):
            path = os.path.join(directory, name)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)


def child_exit(server, worker):
    """Drop a dead worker's live-gauge files (its counters stay counted)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
