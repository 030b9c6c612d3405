"""The listener's read of the log stays index lookups as the log grows, and a message's JSON
is built inline (migration 0015), whoever calls it (issue 15's writers: the listener's reads
run on the same database the writers commit on)."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from django.db import connection, transaction

from chat import history
from chat.events import MESSAGE_FIELDS
from chat.models import Room

from .helpers import unique

ROOMS = 64


def plan_nodes(plan: dict[str, Any]) -> list[tuple[str, str | None]]:
    """Every node of an EXPLAIN (FORMAT JSON) plan: its type and relation."""
    nodes = [(plan["Node Type"], plan.get("Relation Name"))]
    for child in plan.get("Plans", []):
        nodes += plan_nodes(child)
    return nodes


def test_the_listeners_read_of_many_rooms_uses_indexes_on_a_grown_log() -> None:
    """A batch that rang every room of a busy server, over a log of 40,000 entries: as plain
    joins this was planned as a scan of the whole log and of every message (61 ms at
    119,000, growing with the log, once per batch of bells)."""
    prefix = unique("grown")
    slugs = [f"{prefix}-{i}" for i in range(ROOMS)]
    # All in one transaction, rolled back: the suite's database keeps none of the rows
    # (ANALYZE's page and row counts in pg_class and the sequences do stay).
    with transaction.atomic(), connection.cursor() as cursor:
        Room.objects.bulk_create([Room(slug=slug, title=slug) for slug in slugs])
        cursor.execute(
            "INSERT INTO chat_chatmessage (room_id, author, text) "
            "SELECT %s || '-' || (g %% %s), 'bulk', 'n' || g FROM generate_series(1, 40000) g",
            [prefix, ROOMS],
        )
        cursor.execute("ANALYZE chat_messagechange, chat_chatmessage")
        cursor.execute(
            "SELECT room_id, seq FROM (SELECT room_id, seq, row_number() OVER "
            "(PARTITION BY room_id ORDER BY seq DESC) AS n FROM chat_messagechange "
            "WHERE room_id = ANY(%s)) AS t WHERE n <= 3 ORDER BY seq",
            [slugs],
        )
        newest: dict[str, list[int]] = {}  # each room's three newest cursors, oldest first
        for room, seq in cursor.fetchall():
            newest.setdefault(room, []).append(seq)
        # Two after each; every other room read only up to its second newest (a bell's seq).
        upto = [newest[slug][1] if i % 2 == 0 else None for i, slug in enumerate(slugs)]
        positions: list[Any] = [slugs, [newest[slug][0] for slug in slugs], upto]
        # The plan for these values (a custom plan), and the generic plan PostgreSQL may
        # switch to once psycopg has prepared the listener's statement (after 5 runs).
        cursor.execute("EXPLAIN (FORMAT JSON) " + history._CHANGES_AFTER_EACH, positions)
        plans = [cursor.fetchone()[0]]
        prepared = history._CHANGES_AFTER_EACH.replace("%s::text[]", "$1::text[]")
        prepared = prepared.replace("%s::bigint[]", "$2::bigint[]", 1)
        prepared = prepared.replace("%s::bigint[]", "$3::bigint[]", 1)
        cursor.execute("PREPARE listener_read AS " + prepared)
        try:
            cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            cursor.execute("EXPLAIN (FORMAT JSON) EXECUTE listener_read(%s, %s, %s)", positions)
            plans.append(cursor.fetchone()[0])
        finally:
            cursor.execute("DEALLOCATE listener_read")  # a session's, not the transaction's
        cursor.execute(history._CHANGES_AFTER_EACH, positions)
        rows = cursor.fetchall()
        transaction.set_rollback(True)
    for plan in plans:
        scans = [node for node in plan_nodes(plan[0]["Plan"]) if node[1] is not None]
        assert scans
        assert all("Seq Scan" not in kind for kind, _ in scans), scans
    by_room: dict[str, list[int]] = {}
    for room, seq, *_ in rows:
        by_room.setdefault(room, []).append(seq)
    assert by_room == {
        slug: newest[slug][1:2] if i % 2 == 0 else newest[slug][1:] for i, slug in enumerate(slugs)
    }
    assert all(json.loads(row[4])["room"] == row[0] for row in rows)


def test_a_messages_json_is_inlined_into_the_query_that_calls_it(db_url: str) -> None:
    """No SET clause, only schema-qualified names: the planner replaces the calls with the
    expression, so a read pays no function call (or search_path swap) per row; the same
    from a session whose search_path leaves out ``public``."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        [(plan,)] = conn.execute(
            "EXPLAIN (VERBOSE, FORMAT JSON) SELECT chat_message_json(m) FROM chat_chatmessage m"
        ).fetchall()
        [output] = plan[0]["Plan"]["Output"]
        assert "json_build_object" in output, output
        assert "chat_iso" not in output, output
        configs: dict[str, list[str]] = dict(
            conn.execute(
                "SELECT proname, coalesce(proconfig, '{}') FROM pg_proc "
                "WHERE proname IN ('chat_message_json', 'chat_iso')"
            ).fetchall()
        )
        assert configs == {"chat_message_json": [], "chat_iso": []}
        conn.execute("SET search_path = pg_catalog")
        [(plan,)] = conn.execute(
            "EXPLAIN (VERBOSE, FORMAT JSON) "
            "SELECT public.chat_message_json(m) FROM public.chat_chatmessage m"
        ).fetchall()
        [output] = plan[0]["Plan"]["Output"]
        assert "json_build_object" in output, output
        shown = conn.execute(
            "SELECT public.chat_message_json(m)::text FROM public.chat_chatmessage m "
            "WHERE m.deleted_at IS NULL LIMIT 1"
        ).fetchone()
        assert shown is None or set(json.loads(shown[0])) == set(MESSAGE_FIELDS)
