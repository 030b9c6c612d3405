"""A room's writers wait at most 5 s for the room's lock, whatever client or pool they use.

``chat_record_change`` (migration 0004) takes the room's transaction-scoped advisory lock,
held until the writer commits. A psql session left inside a transaction after writing a
message holds it; every other writer of that room (the web, the admin, the CLI, a batch
job) then queued behind it for ever, each holding a pooled connection.

Until now the bound was the web's startup parameter ``options=-c lock_timeout=5s``, which a
transaction-pooling PgBouncer refuses outright (``unsupported startup parameter: options``)
and which protected only the web's own sessions. The bound now belongs to the function that
takes the lock: a ``SET`` clause is applied on entry and undone on exit (PostgreSQL restores
the caller's value), so it holds for every client, through any pool, and changes nothing
else in the writer's transaction: not its other statements, nor the NOTIFY lock at commit.
A writer that waited too long fails with SQLSTATE 55P03 (lock_not_available); the web
answers 503 and nothing is written.
"""

from django.db import migrations

ROOM_LOCK_TIMEOUT = "5s"

FORWARD = f"ALTER FUNCTION chat_record_change(text, bigint, text) SET lock_timeout = '{ROOM_LOCK_TIMEOUT}';"
BACKWARD = "ALTER FUNCTION chat_record_change(text, bigint, text) RESET lock_timeout;"


class Migration(migrations.Migration):
    dependencies = [("chat", "0008_log_transaction_ids")]
    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
