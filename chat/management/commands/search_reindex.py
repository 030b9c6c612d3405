"""``manage.py search_reindex``: rebuild the search index with ``CHAT_SEARCH_CONFIG``.

The index's text search configuration is fixed in its generated column (chat/search_index.py);
this rewrites the column with the configured one, which rebuilds every index of the table,
and points ``chat_search_config()`` (what queries parse with) at it, in one transaction. The
table is locked meanwhile (ACCESS EXCLUSIVE: writers and readers wait): minutes at millions
of messages, so run it in a quiet hour. Nothing to do when the configuration is already the
one set; ``--check`` only says which is which (exit status 1 when they differ).
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connection, transaction

from chat import search_index


class Command(BaseCommand):
    help = "Rebuild the full-text search index with the configuration CHAT_SEARCH_CONFIG names."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--check", action="store_true", help="only compare the index with the setting"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                wanted = search_index.canonical(cursor, search_index.configured())
                built = search_index.current(cursor)
                if wanted == built:
                    self.stdout.write(f"the search index uses {built}, as configured")
                    return
                if options["check"]:
                    raise CommandError(
                        f"the search index uses {built}; CHAT_SEARCH_CONFIG is {wanted}:"
                        " run manage.py search_reindex"
                    )
                cursor.execute(search_index.reindex_sql(wanted))
        except DatabaseError as exc:
            raise CommandError(f"search_reindex failed: {str(exc).splitlines()[0]}") from exc
        self.stdout.write(f"the search index now uses {wanted} (it used {built})")
