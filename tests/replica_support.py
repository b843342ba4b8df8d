"""A real PostgreSQL streaming replica of the test cluster, started and torn down by the tests.

`StreamingReplica.start()` takes a `pg_basebackup -R` of the cluster the test database lives in
(so the test database is on it), starts a second `postgres` in hot-standby mode on a free port in
a temporary directory, and waits until it accepts connections and replays. The primary must allow
replication connections from 127.0.0.1: when its pg_hba.conf has no such line and this process may
write the file (CI runs as root on a fresh machine), one line is added (idempotent) and the
configuration reloaded. When the replica cannot be made (no server binaries, a primary that is not
on this machine, no right to the files) the tests skip with the reason — unless
`REPLICA_TESTS_REQUIRED=1` (CI), where that is a failure.

PostgreSQL refuses to run as root: as root, the server and pg_basebackup run as `postgres`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass

import psycopg

HBA_LINE = "host replication all 127.0.0.1/32 trust"
HBA_COMMENT = "# axiomatic tests: streaming replica of the test cluster (tests/replica_support.py)"
# A hot standby needs these at least as high as its primary's.
_AT_LEAST_PRIMARY = (
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
)


class ReplicaUnavailable(Exception):
    """The environment cannot run a streaming replica (the reason is the message)."""


@dataclass
class Primary:
    host: str
    port: int
    user: str
    password: str

    def connect(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password or None,
            dbname=dbname,
            autocommit=True,
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StreamingReplica:
    def __init__(self, primary: Primary):
        self.primary = primary
        self.port = 0
        self.directory = ""
        self.bin_dir = ""
        self._as_postgres = os.geteuid() == 0

    # --- environment ----------------------------------------------------------------------------

    def _run(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        command = [os.path.join(self.bin_dir, args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
        return result

    def _find_binaries(self, version_num: int) -> None:
        major = version_num // 10000
        path = f"/usr/lib/postgresql/{major}/bin"  # Debian's layout; the server's own major version
        if all(os.path.exists(os.path.join(path, name)) for name in ("postgres", "pg_basebackup", "pg_ctl")):
            self.bin_dir = path
            return
        raise ReplicaUnavailable(f"no PostgreSQL {major} server binaries under /usr/lib/postgresql")

    def _allow_replication(self, admin: psycopg.Connection) -> None:
        """A trust line for replication from 127.0.0.1 in the primary's pg_hba.conf (idempotent)."""
        hba_file = admin.execute("SHOW hba_file").fetchone()[0]
        rules = admin.execute(
            "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NULL AND 'replication' = ANY(database) "
            "AND (type = 'local' OR address IN ('127.0.0.1', '0.0.0.0', 'all', 'samehost')) "
            "AND auth_method = 'trust'"
        ).fetchone()[0]
        if rules:
            return
        if not os.access(hba_file, os.W_OK):
            raise ReplicaUnavailable(
                f"{hba_file} allows no replication from 127.0.0.1 and is not writable: add {HBA_LINE!r}"
            )
        with open(hba_file, encoding="utf-8") as handle:
            text = handle.read()
        if HBA_LINE not in text:
            # First match wins in pg_hba.conf: put the line before the others.
            with open(hba_file, "w", encoding="utf-8") as handle:
                handle.write(f"{HBA_COMMENT}\n{HBA_LINE}\n{text}")
        admin.execute("SELECT pg_reload_conf()")
        time.sleep(0.5)

    # --- life cycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self.primary.host not in ("127.0.0.1", "localhost", "::1"):
            raise ReplicaUnavailable(f"the primary {self.primary.host} is not on this machine")
        if self._as_postgres:
            try:
                postgres_user = pwd.getpwnam("postgres")
            except KeyError:
                raise ReplicaUnavailable("running as root and there is no postgres user") from None
        with self.primary.connect() as admin:
            version_num = int(admin.execute("SHOW server_version_num").fetchone()[0])
            if int(admin.execute("SHOW max_wal_senders").fetchone()[0]) < 1:
                raise ReplicaUnavailable("the primary has max_wal_senders = 0")
            if admin.execute("SHOW wal_level").fetchone()[0] == "minimal":
                raise ReplicaUnavailable("the primary has wal_level = minimal")
            self._find_binaries(version_num)
            self._allow_replication(admin)
            minimums = {name: admin.execute(f"SHOW {name}").fetchone()[0] for name in _AT_LEAST_PRIMARY}
        self.directory = tempfile.mkdtemp(prefix="axiomatic-replica-")
        if self._as_postgres:
            os.chown(self.directory, postgres_user.pw_uid, postgres_user.pw_gid)
        data = os.path.join(self.directory, "data")
        # No replication slot: a concurrent CREATE/DROP DATABASE (another test worker) forces an
        # immediate checkpoint, which was seen to invalidate the backup's temporary slot and end
        # the copy. The WAL is streamed while the copy runs; a copy that fails anyway is retried.
        for attempt in range(3):
            result = self._run(
                "pg_basebackup",
                f"--host={self.primary.host}",
                f"--port={self.primary.port}",
                f"--username={self.primary.user}",
                f"--pgdata={data}",
                "--write-recovery-conf",
                "--wal-method=stream",
                "--no-slot",
                "--checkpoint=fast",
                "--no-sync",
                check=attempt == 2,
            )
            if result.returncode == 0:
                break
            shutil.rmtree(data, ignore_errors=True)
        # A Debian cluster keeps its configuration outside the data directory: give the copy its own.
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "hot_standby": "on",
            "fsync": "off",
            "shared_buffers": "'32MB'",
            "logging_collector": "off",
            "wal_receiver_status_interval": "'1s'",
            "hot_standby_feedback": "off",
            "max_standby_streaming_delay": "'1s'",
            "ssl": "off",
            **minimums,
        }
        self.port = _free_port()
        self._write(os.path.join(data, "postgresql.conf"), "".join(f"{k} = {v}\n" for k, v in settings.items()))
        self._write(os.path.join(data, "pg_hba.conf"), "local all all trust\nhost all all 127.0.0.1/32 trust\n")
        log = os.path.join(self.directory, "replica.log")
        self._run(
            "pg_ctl", "start", "--wait", "--timeout=120", f"--pgdata={data}", f"--log={log}",
            f"--options=-p {self.port} -k {self.directory}",
        )  # fmt: skip
        self.wait_ready()

    def _write(self, path: str, text: str) -> None:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(path, user.pw_uid, user.pw_gid)

    @property
    def data(self) -> str:
        return os.path.join(self.directory, "data")

    def connect(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=dbname, autocommit=True)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.connect() as conn:
                    if conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                        return
                    raise RuntimeError("the copy is not a standby")
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        """Stop the server (an outage); `restart()` brings it back."""
        self._run("pg_ctl", "stop", "--wait", "--mode=fast", f"--pgdata={self.data}", check=False)

    def restart(self) -> None:
        log = os.path.join(self.directory, "replica.log")
        self._run(
            "pg_ctl", "start", "--wait", "--timeout=120", f"--pgdata={self.data}", f"--log={log}",
            f"--options=-p {self.port} -k {self.directory}",
        )  # fmt: skip
        self.wait_ready()

    def destroy(self) -> None:
        if not self.directory:
            return
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            self._run("pg_ctl", "stop", "--wait", "--mode=immediate", f"--pgdata={self.data}", check=False)
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = ""

    # --- replication ----------------------------------------------------------------------------

    def wait_for_replay(self, timeout: float = 180) -> None:
        """Until the replica has replayed everything the primary has written so far."""
        with self.primary.connect() as admin:
            target = admin.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        deadline = time.monotonic() + timeout
        with self.connect() as conn:
            while not conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [str(target)]).fetchone()[0]:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the replica did not replay up to {target} within {timeout}s")
                time.sleep(0.05)

    def pause_replay(self) -> None:
        with self.connect() as conn:
            conn.execute("SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        with self.connect() as conn:
            conn.execute("SELECT pg_wal_replay_resume()")
