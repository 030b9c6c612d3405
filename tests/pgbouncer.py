"""A real PgBouncer (Debian's ``pgbouncer`` package) in front of the embedded PostgreSQL.

Transaction pooling, as an operator runs it in front of many app processes, with password
authentication from a generated userlist, reaching PostgreSQL over loopback TCP with the
cluster's generated password (scram-sha-256). PgBouncer refuses to run as root: then it
switches to the embedded cluster's service user (its own ``-u``), and its folder is that
user's (devtools/embedded_pg/ownership.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import uuid

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from devtools.embedded_pg import SERVICE_USER, EmbeddedPostgres, ownership

from .helpers import DEADLINE, wait_until
from .servers import OUTPUT_DIR, PROJECT_DIR, free_port

BINARY_NAMES = ("pgbouncer", "/usr/sbin/pgbouncer")  # Debian installs it in /usr/sbin


def binary() -> str | None:
    """The pgbouncer program, or None when the package is not installed."""
    for name in BINARY_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


class PgBouncer:
    """One PgBouncer process, restartable on the same port (clients keep their URL)."""

    def __init__(
        self,
        cluster: EmbeddedPostgres,
        *,
        pool_mode: str = "transaction",
        session_aliases: dict[str, str] | None = None,
    ) -> None:
        """``session_aliases``: extra database names served in session mode (alias ->
        database), as docs/deploy/pgbouncer.ini gives the listeners ``pgchat_listen``."""
        program = binary()
        assert program is not None, "pgbouncer is not installed"
        self.program, self.cluster, self.pool_mode = program, cluster, pool_mode
        self.session_aliases = session_aliases or {}
        self.port = free_port()
        # In the project, not /tmp: as root the service user must reach it (see conftest).
        self.folder = PROJECT_DIR / ".pgchat" / "test-pgbouncer" / uuid.uuid4().hex[:8]
        self.log_path = OUTPUT_DIR / f"pgbouncer-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None
        backend = conninfo_to_dict(cluster.tcp_url())
        self.user, self.password = str(backend["user"]), str(backend["password"])
        self._backend_host, self._backend_port = str(backend["host"]), str(backend["port"])

    def url(self, dbname: str) -> str:
        """What the app is given as DATABASE_URL: the pool, never PostgreSQL itself."""
        return make_conninfo(
            "", host="127.0.0.1", port=self.port, dbname=dbname,
            user=self.user, password=self.password,
        )  # fmt: skip

    def start(self) -> PgBouncer:
        self._write_config()
        argv = [self.program, str(self.folder / "pgbouncer.ini")]
        if ownership.is_root():
            argv[1:1] = ["-u", SERVICE_USER]  # it refuses to run as root
        OUTPUT_DIR.mkdir(exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        wait_until(self._accepts, what=f"pgbouncer on port {self.port} accepts")
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM: PgBouncer's immediate shutdown (every client connection dropped), as a
        crash or an operator's restart does; SIGINT waits for queries to finish."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(DEADLINE)

    def restart(self) -> None:
        self.stop()
        self.start()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _accepts(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"pgbouncer exited:\n{self.log_tail()}")
        try:
            # The admin console answers without a server connection behind it.
            psycopg.connect(self.url("pgbouncer"), connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def _write_config(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "userlist.txt").write_text(f'"{self.user}" "{self.password}"\n')
        (self.folder / "pgbouncer.ini").write_text(
            "[databases]\n"
            + "".join(
                f"{alias} = host={self._backend_host} port={self._backend_port}"
                f" dbname={dbname} pool_mode=session\n"
                for alias, dbname in self.session_aliases.items()
            )
            # Any database name the client asks for, on the embedded server (each test
            # run migrates its own test_<name>_<pid>).
            + f"* = host={self._backend_host} port={self._backend_port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"  # TCP only: no socket file to own or clean up
            f"pool_mode = {self.pool_mode}\n"
            "auth_type = scram-sha-256\n"
            f"auth_file = {self.folder / 'userlist.txt'}\n"
            f"admin_users = {self.user}\n"
            "max_client_conn = 500\n"
            "default_pool_size = 20\n"
            # Server connections left idle close soon, so a stopped app leaves none behind.
            "server_idle_timeout = 5\n"
            # After a failed login to PostgreSQL (one that hit it while it shut down),
            # PgBouncer waits this long before trying again, answering "server login has
            # been failing" meanwhile: 15 s by default, a 503 for the first request after a
            # restart (1 of 3 runs). docs/deploy/pgbouncer.ini sets the same.
            "server_login_retry = 1\n"
        )
        os.chmod(self.folder / "userlist.txt", 0o600)
        if ownership.is_root():
            ownership.hand_over([self.folder])
