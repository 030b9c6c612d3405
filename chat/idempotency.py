"""Idempotent posting: a retried ``POST /rooms/<slug>/messages`` with the same
``Idempotency-Key`` gets the first answer again and writes nothing.

Upstream:   chat/messages_api.py, for a post carrying the header (composer.js sends one per
            message, and the same one when it retries).
Downstream: ``chat_idempotentpost`` (chat/models/idempotency.py ``IdempotentPost``), unique per
            (sender, key), holding the first answer's status and body for
            CHAT_IDEMPOTENCY_SECONDS (24 h).
On failure: the claim, the message and the stored answer commit in one transaction, so a
            failed post leaves no claim behind and its retry runs afresh; only a created
            message is remembered (a refusal wrote nothing, so running it again is safe).

The database decides who runs: the claim is ``INSERT ... ON CONFLICT DO NOTHING``. Of two
concurrent requests with one key, the second's insert waits for the first's transaction; if
it committed, the second finds the row taken and reads the answer that committed with it;
if it rolled back, the second claims the key and posts. There is no check-then-insert gap.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.http import HttpRequest

from .models import IDEMPOTENCY_KEY_MAX_LENGTH, IdempotentPost

HEADER = "Idempotency-Key"
PRUNE_ONE_IN = 100  # claims: expired keys are deleted on about one claim in this many
TABLE = IdempotentPost._meta.db_table

_STORED = f"""
SELECT status, response, request_hash FROM {TABLE}
WHERE sender_id = %(sender)s AND key = %(key)s AND status IS NOT NULL
  AND created_at > now() - make_interval(secs => %(ttl)s)
"""
# A key whose row has expired (not yet pruned) is taken over, as if it were new.
_CLAIM = f"""
INSERT INTO {TABLE} AS p (sender_id, key, request_hash) VALUES (%(sender)s, %(key)s, %(hash)s)
ON CONFLICT (sender_id, key) DO UPDATE
    SET request_hash = excluded.request_hash, created_at = now(), status = NULL, response = ''
    WHERE p.created_at <= now() - make_interval(secs => %(ttl)s)
RETURNING id
"""
_RECORD = f"UPDATE {TABLE} SET status = %(status)s, response = %(body)s WHERE id = %(id)s"
_PRUNE = f"DELETE FROM {TABLE} WHERE created_at <= now() - make_interval(secs => %(ttl)s)"


class KeyInvalid(ValueError):
    """The header is empty, too long or not visible ASCII (400)."""


class KeyReused(Exception):
    """The key was used by this user for a different message (422)."""


class KeyBusy(Exception):
    """The key's first request neither finished nor failed in time to answer (409)."""


@dataclass(frozen=True)
class Answer:
    """A response as first sent: status and JSON body, replayed byte for byte."""

    status: int
    body: str


def key_from(request: HttpRequest) -> str | None:
    """The request's Idempotency-Key, or None without one; raises KeyInvalid."""
    raw = request.headers.get(HEADER)
    if raw is None:
        return None
    key = raw.strip()
    if not key:
        raise KeyInvalid(f"{HEADER} is empty")
    if len(key) > IDEMPOTENCY_KEY_MAX_LENGTH:
        raise KeyInvalid(
            f"{HEADER} is {len(key)} characters; the limit is {IDEMPOTENCY_KEY_MAX_LENGTH}"
        )
    if not all("!" <= char <= "~" for char in key):
        raise KeyInvalid(f"{HEADER} must be visible ASCII without spaces, e.g. a UUID")
    return key


def fingerprint(room: str, text: str) -> str:
    """What the key stands for: the same key with another room or text is a client's bug."""
    return hashlib.sha256(f"{room}\x00{text}".encode()).hexdigest()


def stored_answer(sender: int, key: str, request_hash: str) -> Answer | None:
    """The first answer given to this key, if it is still kept; raises KeyReused."""
    ttl: int = settings.CHAT_IDEMPOTENCY_SECONDS
    params: dict[str, str | int] = {"sender": sender, "key": key, "ttl": ttl}
    with connection.cursor() as cursor:
        cursor.execute(_STORED, params)
        row = cursor.fetchone()
    if row is None:
        return None
    status, body, stored_hash = row
    if stored_hash != request_hash:
        raise KeyReused(f"this {HEADER} was already used for a different message")
    return Answer(status, body)


def once(sender: int, key: str, request_hash: str, post: Callable[[], Answer]) -> Answer:
    """Run ``post`` unless this key already ran it; either way, the key's answer."""
    ttl = settings.CHAT_IDEMPOTENCY_SECONDS
    with transaction.atomic():
        with connection.cursor() as cursor:
            if random.randrange(PRUNE_ONE_IN) == 0:
                cursor.execute(_PRUNE, {"ttl": ttl})
            claim: dict[str, str | int] = {
                "sender": sender,
                "key": key,
                "hash": request_hash,
                "ttl": ttl,
            }
            cursor.execute(_CLAIM, claim)
            row = cursor.fetchone()
        if row is not None:  # ours: post, and keep the answer with the message it made
            answer = post()
            with connection.cursor() as cursor:
                cursor.execute(
                    _RECORD, {"status": answer.status, "body": answer.body, "id": row[0]}
                )
            return answer
    # Taken: our insert waited for the first request's commit, so its answer is there now.
    stored = stored_answer(sender, key, request_hash)
    if stored is None:  # its row expired in the instant between the two statements
        raise KeyBusy(f"this {HEADER} is being used by another request; retry")
    return stored


def prune() -> int:
    """Delete the keys older than CHAT_IDEMPOTENCY_SECONDS; returns how many."""
    with connection.cursor() as cursor:
        cursor.execute(_PRUNE, {"ttl": settings.CHAT_IDEMPOTENCY_SECONDS})
        return int(cursor.rowcount)
