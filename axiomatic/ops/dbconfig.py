"""The PostgreSQL entry of DATABASES, tuned for operations (used by settings; no Django imports).

- Connections are reused: persistent per thread (`CONN_MAX_AGE` seconds) with `CONN_HEALTH_CHECKS`,
  or, with `pool=True`, psycopg 3's pool (which needs `CONN_MAX_AGE=0`). Either way a connection
  that broke while the database was away is dropped and replaced: the process recovers by itself.
- `connect_timeout` bounds how long a request (or a probe) waits for an unreachable server.
- `statement_timeout` travels in the connection's startup packet (no extra round trip per
  request); processes that are not web servers replace it when they connect
  (`axiomatic.ops.database`).
"""

from __future__ import annotations


def statement_timeout_option(options: str, statement_timeout_ms: int) -> str:
    """libpq `options` plus `-c statement_timeout=...` (the last setting of a parameter wins)."""
    return f"{options or ''} -c statement_timeout={int(statement_timeout_ms)}".strip()


def postgresql_database(
    database: dict,
    *,
    pool: bool,
    pool_max_size: int,
    health_checks: bool = True,
    connect_timeout: int,
    statement_timeout_ms: int,
) -> dict:
    database = {**database, "OPTIONS": dict(database.get("OPTIONS") or {})}
    options = database["OPTIONS"]
    options.setdefault("connect_timeout", connect_timeout)
    options["options"] = statement_timeout_option(options.get("options", ""), statement_timeout_ms)
    database["CONN_HEALTH_CHECKS"] = health_checks
    if pool:
        # A request waits at most `timeout` for a free (or new) connection, then answers 503.
        options["pool"] = {"min_size": 1, "max_size": pool_max_size, "timeout": float(connect_timeout)}
        database["CONN_MAX_AGE"] = 0  # the pool keeps the connections; Django must not
    return database


def replica_database(replica: dict, *, primary: dict) -> dict:
    """The streaming replica's entry (`DATABASE_REPLICA_URL`): the primary's operations options
    (timeouts, reuse, pool) on the replica's server. It never wraps requests in a transaction
    (`axiomatic.replica` opens one only for the reads it routes, so a replica that is down costs
    the other requests nothing), and a test run never creates a database on it (`MIRROR`: the
    test database reaches it by replication)."""
    database = {**primary, **{key: replica[key] for key in ("NAME", "USER", "PASSWORD", "HOST", "PORT")}}
    database["OPTIONS"] = {**dict(primary.get("OPTIONS") or {}), **dict(replica.get("OPTIONS") or {})}
    if "pool" in database["OPTIONS"]:
        database["OPTIONS"]["pool"] = dict(database["OPTIONS"]["pool"])  # a pool of its own
    database["ATOMIC_REQUESTS"] = False
    database["TEST"] = {"MIRROR": "default"}
    return database
