"""Full-text search (issue 14): ``chat_chatmessage.search_vector``, a stored generated
``tsvector`` of the text, with a GIN index over messages not deleted, and
``chat_search_config()``, the configuration they were built with. See chat/search_index.py.

The configuration is the setting ``CHAT_SEARCH_CONFIG`` at the time this runs (default
``simple``); changing it later takes ``manage.py search_reindex``. The column is not in the
model's state: the ORM never reads or writes it (it would load every vector with every
message), PostgreSQL alone computes it.
"""

from typing import Any

from django.db import migrations

from chat import search_index


def create(apps: Any, schema_editor: Any) -> None:
    with schema_editor.connection.cursor() as cursor:
        config = search_index.canonical(cursor, search_index.configured())
        cursor.execute(search_index.create_sql(config))


def drop(apps: Any, schema_editor: Any) -> None:
    schema_editor.execute(search_index.DROP_SQL)


class Migration(migrations.Migration):
    dependencies = [("chat", "0012_typing_presence")]

    operations = [migrations.RunPython(create, drop)]
