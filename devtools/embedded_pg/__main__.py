"""``python -m devtools.embedded_pg start|stop|status|url|tcp-url|psql [args...]``.

The Makefile's ``db``, ``stop`` and ``psql`` targets call this; so do the tests.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from .cluster import EmbeddedPostgres
from .tools import EmbeddedPgError, binaries_dir


def main(argv: Sequence[str]) -> int:
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
