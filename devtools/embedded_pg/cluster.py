"""One embedded PostgreSQL cluster's life: create it, start it (once, for many processes),
recover it after a crash, stop it.

The cluster lives in a state folder (``.pgchat/pg/`` by default): data, socket, port,
password and log. Its programs are the pgserver wheel's (tools.py); who owns its files, and
so who runs them, is ownership.py's business.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import ownership
from .ownership import SERVICE_USER
from .tools import EmbeddedPgError, binaries_dir, run

PROJECT_DIR = Path(__file__).resolve().parent.parent.parent
DEFAULT_STATE_DIR = PROJECT_DIR / ".pgchat" / "pg"
SUPERUSER = "postgres"
DATABASE = "pgchat"
PORT_RANGE = (20000, 30000)  # below the ephemeral range 32768-60999
SOCKET_PATH_MAX_BYTES = 107  # sun_path is 108 bytes including the NUL
START_TIMEOUT_SECONDS = 60
RETRY_SECONDS = 0.2  # between start attempts while a crashed server's backends exit


@dataclass(frozen=True)
class EmbeddedPostgres:
    """One cluster in ``state_dir``: data, socket, port, log and password live there."""

    state_dir: Path = DEFAULT_STATE_DIR

    @classmethod
    def from_environment(cls) -> EmbeddedPostgres:
        """The project's cluster, or the one in ``CHAT_EMBEDDED_PG_DIR`` (tests use that)."""
        return cls(Path(os.environ.get("CHAT_EMBEDDED_PG_DIR") or DEFAULT_STATE_DIR))

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "server.log"

    @property
    def socket_dir(self) -> Path:
        """The socket lives in the project folder unless that path is too long for sun_path."""
        preferred = self.state_dir / "run"
        if len(str(preferred / ".s.PGSQL.00000").encode()) <= SOCKET_PATH_MAX_BYTES:
            return preferred
        digest = hashlib.sha1(str(self.state_dir).encode()).hexdigest()[:12]
        return Path("/tmp") / f"pgchat-{digest}"

    @property
    def _port_file(self) -> Path:
        return self.state_dir / "port"

    @property
    def _password_file(self) -> Path:
        return self.state_dir / "password"

    @property
    def _lock_file(self) -> Path:
        # Beside the state folder, not in it: when root hands the folder to the service
        # user, the lock must stay ours.
        return self.state_dir.with_name(self.state_dir.name + ".lock")

    # -- public API -------------------------------------------------------------------

    def url(self, database: str = DATABASE) -> str:
        """A libpq URL over the Unix socket (trusted: only this folder's owner reaches it)."""
        return f"postgresql://{SUPERUSER}@/{database}?host={self.socket_dir}&port={self.port()}"

    def tcp_url(self, database: str = DATABASE) -> str:
        """A libpq URL over loopback TCP, with the generated password (scram-sha-256)."""
        password = self._password_file.read_text().strip()
        return f"postgresql://{SUPERUSER}:{password}@127.0.0.1:{self.port()}/{database}"

    def port(self) -> int:
        try:
            return int(self._port_file.read_text())
        except FileNotFoundError:
            raise EmbeddedPgError(f"no cluster in {self.state_dir}: start it first") from None

    def is_running(self) -> bool:
        """True when the postmaster of this folder answers on its socket."""
        if not self._port_file.exists() or not (self.data_dir / "PG_VERSION").exists():
            return False
        argv = ["pg_isready", "-q", "-U", SUPERUSER, "-d", "postgres"]
        argv += ["-h", str(self.socket_dir), "-p", str(self.port())]
        result = self._run_tool(argv, check=False)
        return result.returncode == 0

    def ensure_running(self) -> None:
        """Create the cluster if needed and start it if it is not running; idempotent."""
        if self.is_running():  # the common case needs no lock
            return
        with self._locked():
            if self.is_running():  # another process won the race while we waited
                return
            self._prepare_folders()
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb()
            self._start()
            self._ensure_database()

    def stop(self) -> None:
        """Stop the server (fast mode: ends sessions, checkpoints); no-op when stopped."""
        with self._locked():
            if not (self.data_dir / "postmaster.pid").exists():
                return
            self._run_as_owner(
                [self._bin("pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w"],
                check=False,
            )

    # -- steps --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._lock_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_file, "w") as lock:  # O_CLOEXEC: the postmaster won't inherit it
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _prepare_folders(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.socket_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.state_dir not in self.socket_dir.parents:  # the /tmp fallback: anyone
            ownership.check_private_dir(self.socket_dir)  # could have made that folder
        if ownership.is_root():
            ownership.hand_over([self.state_dir, self.socket_dir])
            ownership.check_service_user_reaches(
                binaries_dir() / "postgres", self.state_dir, PROJECT_DIR
            )

    def _initdb(self) -> None:
        if self.data_dir.exists():  # a half-made cluster from an interrupted initdb
            shutil.rmtree(self.data_dir)
        self._password_file.write_text(secrets.token_urlsafe(24) + "\n")
        self._password_file.chmod(0o600)
        if ownership.is_root():
            shutil.chown(self._password_file, SERVICE_USER, SERVICE_USER)
        self._run_as_owner(
            [
                self._bin("initdb"),
                "-D", str(self.data_dir),
                "-U", SUPERUSER,
                "-E", "UTF8",
                "--locale=C",
                "--auth-local=trust",  # the socket folder is 0700: only its owner (and root)
                "--auth-host=scram-sha-256",  # TCP needs the generated password
                f"--pwfile={self._password_file}",
            ]
        )  # fmt: skip

    def _start(self) -> None:
        self._remove_stale_lock_files()
        port = self._choose_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} "
            f"-c unix_socket_directories='{self.socket_dir}'"
        )  # durability settings stay at their defaults: a lost commit would be a lost message
        argv = [
            self._bin("pg_ctl"), "start", "-D", str(self.data_dir), "-l", str(self.log_file),
            "-o", options, "-w", "-t", str(START_TIMEOUT_SECONDS),
        ]  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            result = self._run_as_owner(argv, check=False)
            # After a crash, the dead postmaster's backends take a moment to notice and exit;
            # until then PostgreSQL refuses to reuse the shared memory they still hold.
            if result.returncode == 0 or "still in use" not in self._log_tail():
                break
            if time.monotonic() > deadline:
                break
            time.sleep(RETRY_SECONDS)
        if result.returncode != 0:
            raise EmbeddedPgError(
                f"PostgreSQL did not start (pg_ctl exit {result.returncode}):\n"
                f"{result.stdout}{result.stderr}\n--- {self.log_file} ---\n{self._log_tail()}"
            )

    def _remove_stale_lock_files(self) -> None:
        """Remove PostgreSQL's lock files (postmaster.pid, the socket's .lock) when the pid
        in them is no live postmaster.

        PostgreSQL discards a lock file whose process is gone, but refuses to start when the
        pid is alive: reused by another process after a reboot, or a killed postmaster left
        as a zombie because nothing reaped it (containers without an init do that).
        """
        for lock_file in [
            self.data_dir / "postmaster.pid",
            *self.socket_dir.glob(".s.PGSQL.*.lock"),
        ]:
            try:
                pid = int(lock_file.read_text().split()[0])
            except (FileNotFoundError, IndexError, ValueError):
                continue
            if not _is_live_postmaster(pid):
                lock_file.unlink(missing_ok=True)

    def _choose_port(self) -> int:
        """The stored port if still free, else a free one derived from the folder path."""
        with contextlib.suppress(EmbeddedPgError, ValueError):
            stored = self.port()
            if _port_is_free(stored):
                return stored
        low, high = PORT_RANGE
        start = int(hashlib.sha1(str(self.state_dir).encode()).hexdigest(), 16) % (high - low)
        for offset in range(high - low):
            port = low + (start + offset) % (high - low)
            if _port_is_free(port):
                self._port_file.write_text(f"{port}\n")
                return port
        raise EmbeddedPgError(f"no free TCP port in {PORT_RANGE}")

    def _ensure_database(self) -> None:
        exists = self._psql("postgres", f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'")
        if exists.strip() != "1":
            self._psql("postgres", f'CREATE DATABASE "{DATABASE}"')

    # -- helpers ------------------------------------------------------------------------

    def _psql(self, database: str, sql: str) -> str:
        result = self._run_tool(
            [
                "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                "-h", str(self.socket_dir), "-p", str(self.port()), "-U", SUPERUSER,
                "-d", database, "-c", sql,
            ]
        )  # fmt: skip
        return result.stdout

    def _bin(self, name: str) -> str:
        return str(binaries_dir() / name)

    def _run_tool(self, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a client tool from the wheel as ourselves (root may connect to the socket)."""
        return run([self._bin(argv[0]), *argv[1:]], check=check)

    def _run_as_owner(
        self, argv: list[str], *, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a server tool as the cluster's owner: ourselves, or the service user if root."""
        return run(ownership.as_owner(argv), check=check, cwd=self.state_dir)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _is_live_postmaster(pid: int) -> bool:
    """True when ``pid`` runs, is not a zombie, and is a postgres process."""
    try:
        command = Path(f"/proc/{pid}/comm").read_text().strip()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return command in ("postgres", "postmaster") and state not in ("Z", "X")


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
