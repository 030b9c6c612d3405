"""Rate-limit counters (chat/ratelimit.py) and remembered idempotent posts (chat/idempotency.py).

``chat_ratelimit`` is UNLOGGED: a counter is written on every limited request, and writing
no WAL for it keeps that cheap; after a PostgreSQL crash it comes back empty (the budgets
refill) and it is not copied to replicas, neither of which matters for a rate limit. It is
not a Django model: only chat/ratelimit.py's two statements use it.
"""

import django.db.models.deletion
import django.db.models.functions.datetime
from django.conf import settings
from django.db import migrations, models

RATELIMIT_TABLE = """
CREATE UNLOGGED TABLE chat_ratelimit (
    bucket text PRIMARY KEY,  -- scope, identity, window: 'messages:user:42/10'
    window_start timestamptz NOT NULL,
    window_end timestamptz NOT NULL,
    hits integer NOT NULL
);
CREATE INDEX chat_ratelimit_window_end ON chat_ratelimit (window_end);  -- for pruning
"""


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0005_doorbells_and_access"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunSQL(RATELIMIT_TABLE, "DROP TABLE chat_ratelimit"),
        migrations.CreateModel(
            name="IdempotentPost",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("key", models.CharField(max_length=255)),
                ("request_hash", models.CharField(max_length=64)),
                ("status", models.SmallIntegerField(null=True)),
                ("response", models.TextField(db_default="")),
                (
                    "created_at",
                    models.DateTimeField(db_default=django.db.models.functions.datetime.Now()),
                ),
                (
                    "sender",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "indexes": [models.Index(fields=["created_at"], name="chat_idempotent_post_age")],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("sender", "key"), name="chat_idempotent_post_key"
                    )
                ],
            },
        ),
    ]
