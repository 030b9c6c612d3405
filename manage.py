#!/usr/bin/env python
"""Django's command-line utility, which also starts the embedded PostgreSQL when it is in use.

Settings only read where the database is; this entry point (like ``make db``) starts the
project's own server first when no ``DATABASE_URL`` is set, so ``manage.py`` works on a fresh
clone. ``dbshell`` runs ``psql``: the one in the server wheel is appended to ``PATH`` for a
machine that has none (an installed psql still wins).
"""

import contextlib
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from devtools import embedded_pg

    if not os.environ.get("DATABASE_URL"):
        try:
            embedded_pg.EmbeddedPostgres.from_environment().ensure_running()
        except embedded_pg.EmbeddedPgError as exc:
            sys.exit(f"manage.py: the embedded PostgreSQL could not start: {exc}")
    with contextlib.suppress(embedded_pg.EmbeddedPgError):
        os.environ["PATH"] += os.pathsep + str(embedded_pg.binaries_dir())
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
