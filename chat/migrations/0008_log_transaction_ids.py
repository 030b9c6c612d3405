"""Each log entry records the transaction that wrote it, so /events can resume by snapshot.

``chat_messagechange.txid`` (``xid8``) is filled with ``pg_current_xact_id()`` by the column's
default as ``chat_record_change`` (the logging trigger's function) inserts the entry: the
top-level transaction's 64-bit id (no wraparound). A user stream's resume token is a
``pg_current_snapshot()`` (chat/position.py); the changes after it are the entries whose
transaction is not visible in that snapshot but is in a newer one (chat/history.py,
``changes_since``), found through the index on ``txid`` from the old snapshot's ``xmin``.

Entries written before this migration get ``'1'``: below every snapshot's ``xmin``, so every
token counts them as delivered (no token existed before this migration). Adding the column
with that constant default rewrites nothing; the default then becomes the function.
The column is SQL-only (Django has no ``xid8`` field): the ORM never reads or writes it.
"""

from django.db import migrations

FORWARD = """
ALTER TABLE chat_messagechange ADD COLUMN txid xid8 NOT NULL DEFAULT '1';
ALTER TABLE chat_messagechange ALTER COLUMN txid SET DEFAULT pg_current_xact_id();
CREATE INDEX chat_change_txid ON chat_messagechange (txid);
"""

BACKWARD = """
DROP INDEX IF EXISTS chat_change_txid;
ALTER TABLE chat_messagechange DROP COLUMN IF EXISTS txid;
"""


class Migration(migrations.Migration):
    dependencies = [("chat", "0007_workspace")]
    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
