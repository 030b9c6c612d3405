"""Hop 1 on its own: the trigger's SQL functions, constraints and the per-room cursor, in SQL."""

from __future__ import annotations

import json
import threading
from typing import Any

import psycopg
import pytest
from django.db import connection

from chat.events import MESSAGE_FIELDS, Bell
from chat.models import ChatMessage, MessageChange, Room

from .helpers import DEADLINE, unique
from .servers import insert_sql, psql_argv


def sql(query: str, *params: Any) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall() if cursor.description else []


def message_json(message: ChatMessage) -> dict[str, Any]:
    [(shown,)] = sql(
        "SELECT chat_message_json(m)::text FROM chat_chatmessage m WHERE id = %s", message.pk
    )
    loaded: dict[str, Any] = json.loads(shown)
    return loaded


def test_message_json_has_the_fields_chat_events_name(room: Room) -> None:
    message = ChatMessage.objects.create(room=room, author="ada", text='quote " and\nnewline')
    shown = message_json(message)
    assert tuple(shown) == MESSAGE_FIELDS  # the SQL and chat/events.py agree
    assert shown["text"] == 'quote " and\nnewline'


def test_message_bell_is_small_and_parses(room: Room) -> None:
    [(payload,)] = sql("SELECT chat_message_bell(%s, 7)", room.slug)
    assert set(json.loads(payload)) == {"kind", "room", "seq", "at"}
    assert len(payload) < 150  # whatever the message: it never nears NOTIFY's 8000 bytes
    bell = Bell.from_payload(payload)
    assert (bell.kind, bell.room, bell.seq) == ("message", room.slug, 7)


def test_a_message_over_notifys_limit_rings_a_small_bell(room: Room, db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as listening:
        listening.execute("LISTEN chat")
        message = ChatMessage.objects.create(room=room, author="ada", text="€" * 4000)
        bells = [Bell.from_payload(n.payload) for n in listening.notifies(timeout=5, stop_after=1)]
    assert [(b.kind, b.room) for b in bells] == [("message", room.slug)]
    assert message.pk is not None


def test_message_json_of_no_row_is_null() -> None:
    [(shown,)] = sql("SELECT chat_message_json(NULL::chat_chatmessage)")
    assert shown is None


def test_timestamps_are_utc_whatever_the_writers_timezone(room: Room) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET TIME ZONE 'Asia/Tokyo'")
        try:
            message = ChatMessage.objects.create(room=room, author="a", text="tz")
            created_at = message_json(message)["created_at"]
        finally:
            cursor.execute("SET TIME ZONE 'UTC'")
    assert created_at.endswith("+00:00")
    assert len(created_at) == len("2026-11-24T10:00:00.123456+00:00")


def test_each_operation_appends_to_the_log_in_order(room: Room) -> None:
    message = ChatMessage.objects.create(room=room, author="a", text="one")
    ChatMessage.objects.filter(pk=message.pk).update(text="two")
    ChatMessage.objects.filter(pk=message.pk).update(text="two")  # no change: no event
    ChatMessage.objects.filter(pk=message.pk).delete()
    log = list(MessageChange.objects.filter(room=room).order_by("seq").values_list("seq", "op"))
    assert [op for _, op in log] == ["created", "updated", "deleted"]


def test_edit_is_stamped_by_the_database(room: Room) -> None:
    message = ChatMessage.objects.create(room=room, author="a", text="one")
    assert message.edited_at is None
    sql("UPDATE chat_chatmessage SET text = 'two' WHERE id = %s", message.pk)
    message.refresh_from_db()
    assert message.edited_at is not None


def test_bare_psql_insert_works_and_fills_defaults(room: Room, db_url: str) -> None:
    import subprocess

    subprocess.run(
        psql_argv(db_url, insert_sql(room.slug, "hello")), check=True, capture_output=True
    )
    message = ChatMessage.objects.get(room=room)
    assert (message.author, message.text, message.deleted_at) == ("ops", "hello", None)
    assert message.created_at is not None


@pytest.mark.parametrize(
    ("statement", "error"),
    [
        ("INSERT INTO chat_chatmessage (room_id, author, text) VALUES ('{room}', 'a', '')",
         "chat_message_text_not_blank"),
        ("INSERT INTO chat_chatmessage (room_id, author, text) VALUES ('{room}', 'a', ' \n ')",
         "chat_message_text_not_blank"),
        ("INSERT INTO chat_chatmessage (room_id, author, text)"
         " VALUES ('{room}', 'a', repeat('x', 4001))",
         "chat_message_text_max_4000"),
        ("INSERT INTO chat_chatmessage (room_id, author, text) VALUES ('{room}', '', 'hi')",
         "chat_message_author_not_blank"),
        ("INSERT INTO chat_chatmessage (room_id, author, text) VALUES ('no-such-room', 'a', 'hi')",
         "violates foreign key constraint"),
        ("UPDATE chat_chatmessage SET room_id = 'lobby' WHERE room_id = '{room}'",
         "id, room_id and created_at cannot change"),
        ("INSERT INTO chat_room (slug) VALUES ('')", "chat_room_slug_valid"),
        ("INSERT INTO chat_room (slug) VALUES ('has space')", "chat_room_slug_valid"),
    ],
)  # fmt: skip
def test_database_refuses_rows_the_ui_could_not_show(
    room: Room, db_url: str, statement: str, error: str
) -> None:
    import subprocess

    ChatMessage.objects.create(room=room, author="a", text="existing")
    before = MessageChange.objects.filter(room=room).count()
    result = subprocess.run(
        psql_argv(db_url, statement.format(room=room.slug)), capture_output=True, text=True
    )
    assert result.returncode != 0
    assert error in result.stderr  # a readable message, straight from psql
    assert MessageChange.objects.filter(room=room).count() == before  # nothing half-written


def test_concurrent_writers_get_unique_cursors(room: Room, db_url: str) -> None:
    """The advisory lock serialises a room's writers: no duplicate seq, no unique violation.
    (That a higher seq never commits first is tests/test_resume.py's held-transaction test.)"""
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as conn:
                for i in range(25):
                    conn.execute(
                        "INSERT INTO chat_chatmessage (room_id, author, text) VALUES (%s, %s, %s)",
                        (room.slug, f"w{n}", f"{n}-{i}"),
                    )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE)
    assert errors == []
    seqs = list(MessageChange.objects.filter(room=room).values_list("seq", flat=True))
    assert len(seqs) == len(set(seqs)) == 200


def test_a_room_created_again_never_reuses_a_cursor() -> None:
    """Stale clients and the listener remember the old room's cursors: the new room's must
    be above them, or its first events would be skipped as already seen."""
    slug = unique("gone")
    room = Room.objects.create(slug=slug)
    ChatMessage.objects.create(room=room, author="a", text="x")
    old = MessageChange.objects.get(room_id=slug).seq
    room.delete()
    assert not MessageChange.objects.filter(room_id=slug).exists()  # its log went with it
    again = Room.objects.create(slug=slug)
    ChatMessage.objects.create(room=again, author="a", text="y")
    assert MessageChange.objects.get(room=again).seq > old


def test_repeatable_read_writers_do_not_collide(room: Room, db_url: str) -> None:
    """A cursor must not depend on the writer's snapshot (it did: max(seq) + 1)."""
    with psycopg.connect(db_url) as a, psycopg.connect(db_url, autocommit=True) as b:
        a.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        a.execute("SELECT 1")  # A's snapshot is taken now
        b.execute(insert_sql(room.slug, "from B"))
        a.execute(insert_sql(room.slug, "from A"))  # raised a unique violation before
        a.commit()
    assert MessageChange.objects.filter(room=room).count() == 2


def test_suite_runs_on_a_test_database_never_the_real_one() -> None:
    assert connection.settings_dict["NAME"].startswith("test_")


def test_lobby_exists_after_migrate() -> None:
    assert Room.objects.filter(slug="lobby").exists()


def test_an_insert_runs_one_trigger_and_the_bell_is_inlined(room: Room) -> None:
    """Migration 0014's cheaper INSERT stays cheap: one trigger of ours (the foreign keys'
    checks are PostgreSQL's), a bell function the planner can inline (no SET clause), and
    chat_record_change still bounds its wait for the room's lock."""
    [(plan,)] = sql(
        "EXPLAIN (ANALYZE, FORMAT JSON) INSERT INTO chat_chatmessage (room_id, author, text) "
        "VALUES (%s, 'ada', 'hi @nobody')",
        room.slug,
    )
    ours = [t["Trigger Name"] for t in plan[0]["Triggers"] if t["Trigger Name"].startswith("pg")]
    assert ours == ["pgtrigger_chat_message_notify_4bb22"]
    configs = dict(
        sql(
            "SELECT proname, coalesce(proconfig, '{}') FROM pg_proc "
            "WHERE proname IN ('chat_message_bell', 'chat_record_change')"
        )
    )
    assert configs["chat_message_bell"] == []
    assert "lock_timeout=5s" in configs["chat_record_change"]


def test_an_insert_tracks_live_rows_and_mentions_like_an_edit_would(room: Room) -> None:
    """The INSERT path writes what chat_track_message writes: a live row at the creating
    cursor, mentions only of others and only when not deleted; a row inserted already
    deleted is logged and rung but neither live nor mentioning."""
    sql(
        "INSERT INTO auth_user (username, password, is_superuser, first_name, last_name, "
        "email, is_staff, is_active, date_joined) "
        "VALUES ('zed', '!', false, '', '', '', false, true, now()), "
        "('yan', '!', false, '', '', '', false, true, now())"
    )
    [(zed,)], [(yan,)] = (
        sql("SELECT id FROM auth_user WHERE username = 'zed'"),
        sql("SELECT id FROM auth_user WHERE username = 'yan'"),
    )
    [(shown, ghost)] = sql(
        "WITH a AS (INSERT INTO chat_chatmessage (room_id, author, sender_id, text) "
        "VALUES (%s, 'yan', %s, '@zed and @yan.') RETURNING id), "
        "b AS (INSERT INTO chat_chatmessage (room_id, author, text, deleted_at) "
        "VALUES (%s, 'ada', '@zed gone', now()) RETURNING id) "
        "SELECT a.id, b.id FROM a, b",
        room.slug, yan, room.slug,
    )  # fmt: skip
    changes = sql(
        "SELECT message_id, seq FROM chat_messagechange WHERE op = 'created' "
        "AND message_id IN (%s, %s)",
        shown, ghost,
    )  # fmt: skip
    created = dict(changes)
    assert set(created) == {shown, ghost}  # both logged
    live = sql(
        "SELECT message_id, seq, sender_id FROM chat_livemessage WHERE room_id = %s", room.slug
    )
    assert live == [(shown, created[shown], yan)]
    mentions = sql(
        "SELECT message_id, user_id, seq FROM chat_mention WHERE room_id = %s", room.slug
    )
    assert mentions == [(shown, zed, created[shown])]  # not the sender, not the deleted one
