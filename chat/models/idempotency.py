"""Idempotency keys of posts: the first answer, kept for a retry (chat/idempotency.py)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Now

IDEMPOTENCY_KEY_MAX_LENGTH = 255  # characters; a UUID is 36


class IdempotentPost(models.Model):
    """A message post made with an ``Idempotency-Key``: its first answer, replayed to a retry.

    Unique per (sender, key), so two concurrent requests with one key cannot both claim it:
    the second waits for the first's transaction and then reads its answer (chat/idempotency.py).
    Kept for CHAT_IDEMPOTENCY_SECONDS (24 h), then pruned.
    """

    sender = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=IDEMPOTENCY_KEY_MAX_LENGTH)
    # sha256 of the room and text: the same key sent with another message is refused (422).
    request_hash = models.CharField(max_length=64)
    status = models.SmallIntegerField(null=True)  # null only inside the claiming transaction
    response = models.TextField(db_default="")  # the JSON body, byte for byte as first sent
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["sender", "key"], name="chat_idempotent_post_key"),
        ]
        indexes = [models.Index(fields=["created_at"], name="chat_idempotent_post_age")]

    def __str__(self) -> str:
        return f"{self.key} by user {self.sender_id}"
