"""The conversation in the browser (issue 13): real Chromium, real servers, real writers.

Readable messages (markdown rendered from the stored text into DOM nodes, and an XSS corpus
that must stay inert), reactions live across browsers, presence and typing, grouping and
day separators, the composer, and the connection indicator. Fixtures and helpers come
from tests/test_browser.py.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import AbstractUser, User
from playwright.async_api import Locator, Page, Route, expect

from chat.models import ChatMessage, Room

from .helpers import DEADLINE
from .servers import Server, insert_sql, psql
from .test_browser import (  # fixtures and helpers, not tests
    OpenPage,
    alice,
    bob,
    browser,
    browser_test,
    chromium,
    enter_room,
    message,
    open_page,
    send,
    tab_to,
    texts,
)

__all__ = ["alice", "bob", "browser", "chromium", "open_page"]  # fixtures pytest finds by name

ROOT = Path(__file__).resolve().parent.parent
VENDORED_MARKDOWN_IT = ROOT / "chat/static/chat/vendor/markdown-it/markdown-it.esm.min.js"

# Each message's .text as markup: tags with every attribute (sorted), text as is. An
# attribute the renderer never sets (an on* handler, style, src) would show up here.
DUMP = """items => items.map(root => {
    const dump = (node) => {
        if (node.nodeType === Node.TEXT_NODE) {
            const text = node.data.replaceAll("&", "&amp;");
            return text.replaceAll("<", "&lt;").replaceAll(">", "&gt;");
        }
        const attrs = Array.from(node.attributes).map(a => a.name).sort()
            .map(name => ` ${name}="${node.getAttribute(name)}"`).join("");
        const tag = node.tagName.toLowerCase();
        return `<${tag}${attrs}>${Array.from(node.childNodes).map(dump).join("")}</${tag}>`;
    };
    return Array.from(root.childNodes).map(dump).join("");
})"""

LINK = 'rel="noopener noreferrer nofollow" target="_blank"'


async def rendered(page: Page) -> list[str]:
    result: list[str] = await page.locator("#messages > li.message > .text").evaluate_all(DUMP)
    return result


# -- 13.4 readable messages --------------------------------------------------------------------


def test_the_vendored_markdown_it_is_the_version_the_readme_names() -> None:
    """The file says its version on its first line; the README must say the same one."""
    first = VENDORED_MARKDOWN_IT.read_text(encoding="utf-8").splitlines()[0]
    match = re.match(r"/\*! markdown-it (\d+\.\d+\.\d+) ", first)
    assert match, first
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"markdown-it {match.group(1)}" in readme
    assert (VENDORED_MARKDOWN_IT.parent / "LICENSE").read_text().startswith("Copyright (c)")


RENDERING = [
    (
        "see https://example.com/a?b=1 now",
        f'<p>see <a href="https://example.com/a?b=1" {LINK}>https://example.com/a?b=1</a> now</p>',
    ),
    (
        "[the docs](https://example.com/docs)",
        f'<p><a href="https://example.com/docs" {LINK}>the docs</a></p>',
    ),
    (
        "write to <ann@example.com>",
        f'<p>write to <a href="mailto:ann@example.com" {LINK}>ann@example.com</a></p>',
    ),
    ("use `rm -rf /` with care", "<p>use <code>rm -rf /</code> with care</p>"),
    (
        "```\nfor x in y:\n    **not bold** <b>\n```",
        "<pre><code>for x in y:\n    **not bold** &lt;b&gt;</code></pre>",
    ),
    (
        "**bold** *italic* ~~gone~~ _also_",
        "<p><strong>bold</strong> <em>italic</em> <s>gone</s> <em>also</em></p>",
    ),
    ("> quoted\n\nmy reply", "<blockquote><p>quoted</p></blockquote><p>my reply</p>"),
    ("line one\nline two", "<p>line one\nline two</p>"),
    (
        "hi @bob and @{me}.",
        '<p>hi <span class="mention">@bob</span> and <span class="mention me">@{me}</span>.</p>',
    ),
    ("- one\n- two", "<ul><li>one</li><li>two</li></ul>"),
    ("# not a heading, 1 < 2 & 3 > 2", "<p># not a heading, 1 &lt; 2 &amp; 3 &gt; 2</p>"),
]


@browser_test
async def test_messages_render_links_code_emphasis_quotes_and_mentions(
    open_page: OpenPage, room: Room, alice: AbstractUser, db_url: str
) -> None:
    """Written with psql (no API in the way): the page renders each the same for everyone."""
    me = alice.username
    cases = [(text.replace("{me}", me), html.replace("{me}", me)) for text, html in RENDERING]
    await psql(db_url, *(insert_sql(room.slug, text) for text, _ in cases[:-1]))
    page = await open_page(alice)
    await enter_room(page, room)
    await psql(db_url, insert_sql(room.slug, cases[-1][0]))  # and one live, from the stream
    await expect(texts(page)).to_have_count(len(cases))
    assert await rendered(page) == [html for _, html in cases]


XSS = [
    '<img src=x onerror="window.__xss=1">',
    "<script>window.__xss=1</script>",
    '<svg onload="window.__xss=1"><circle/></svg>',
    '<a href="javascript:window.__xss=1">click</a>',
    '<iframe src="javascript:window.__xss=1"></iframe>',
    "[x](javascript:window.__xss=1)",
    "[x](JaVaScRiPt:window.__xss=1)",
    "[x](  javascript:window.__xss=1  )",
    "[x](java&#x09;script:window.__xss=1)",
    "<javascript:window.__xss=1>",
    "javascript:window.__xss=1",
    "[x](data:text/html;base64,PHNjcmlwdD53aW5kb3cuX194c3M9MTwvc2NyaXB0Pg==)",
    "<data:text/html,<script>window.__xss=1</script>>",
    "[x](vbscript:msgbox(1))",
    "[x](/relative/path) [y](//evil.example/x)",
    '[x](https://ok.example/"onmouseover="window.__xss=1)',
    '![img](https://example.com/x.png "title")',
    "&lt;img src=x onerror=window.__xss=1&gt; &#60;script&#62;",
    "```html\n<script>window.__xss=1</script>\n```",
    '**<img src=x onerror="window.__xss=1">** `<svg onload=window.__xss=1>`',
    "[x](https://example.com 'title\" onclick=\"window.__xss=1')",
]
ALLOWED_TAGS = {
    "p",
    "a",
    "code",
    "pre",
    "strong",
    "em",
    "s",
    "blockquote",
    "ul",
    "ol",
    "li",
    "span",
}
ALLOWED_ATTRIBUTES = {"href", "rel", "target", "class", "start"}


@browser_test
async def test_an_xss_corpus_stays_inert_text(
    open_page: OpenPage, room: Room, alice: AbstractUser, db_url: str
) -> None:
    """Markup, script URLs, data: URLs and entities, on the history and the live path: only
    the renderer's own elements and attributes appear, every link is http(s) or mailto,
    nothing runs and nothing is fetched."""
    half = len(XSS) // 2
    await psql(db_url, *(insert_sql(room.slug, text) for text in XSS[:half]))
    page = await open_page(alice)
    fetched: list[str] = []
    page.on("request", lambda request: fetched.append(request.url))
    await enter_room(page, room)
    await psql(db_url, *(insert_sql(room.slug, text) for text in XSS[half:]))
    await expect(texts(page)).to_have_count(len(XSS))
    found = await page.locator("#messages > li.message > .text").evaluate_all(
        """items => items.flatMap(root => Array.from(root.querySelectorAll("*")).map(node => ({
            tag: node.tagName.toLowerCase(),
            attributes: Array.from(node.attributes).map(a => a.name),
            href: node.tagName === "A" ? node.protocol : null,
        })))"""
    )
    assert {node["tag"] for node in found} <= ALLOWED_TAGS, found
    assert {name for node in found for name in node["attributes"]} <= ALLOWED_ATTRIBUTES, found
    assert {node["href"] for node in found if node["tag"] == "a"} <= {"https:"}, found
    assert await page.evaluate("typeof window.__xss") == "undefined"
    assert not [url for url in fetched if url.endswith("/x") or "x.png" in url], fetched
    # What was typed is what is shown, as characters (the first few, whole).
    shown = await texts(page).all_text_contents()
    assert shown[:3] == XSS[:3]
    assert shown[5] == XSS[5]
    assert "&lt;img" in shown[17]


# -- 13.3 reactions ----------------------------------------------------------------------------


def chip(page: Page, message_id: int, emoji: str) -> Locator:
    return page.locator(f"li.message[data-id='{message_id}'] .reaction[data-emoji='{emoji}']")


@browser_test
async def test_reactions_are_live_toggle_and_count_once(
    open_page: OpenPage, room: Room, alice: AbstractUser, bob: AbstractUser, db_url: str
) -> None:
    """Bob has joined the room (his page hears it on the shared /events), alice only looks
    at it (the room's own stream): both paths carry reactions, from the UI and from psql."""
    await room.members.aadd(bob.pk)
    await psql(db_url, insert_sql(room.slug, "react to me"))
    row = await ChatMessage.objects.aget(room=room, text="react to me")
    page_a, page_b = await open_page(alice), await open_page(bob)
    await enter_room(page_a, room)
    await enter_room(page_b, room)

    item_a = page_a.locator(f"li.message[data-id='{row.pk}']")
    await item_a.locator("button.add-reaction").click()
    await item_a.locator(".palette button[data-emoji='👍']").click()
    for page in (page_a, page_b):
        await expect(chip(page, row.pk, "👍").locator(".count")).to_have_text("1")
        await expect(chip(page, row.pk, "👍")).to_have_attribute("title", alice.username)
    await expect(chip(page_a, row.pk, "👍")).to_have_class(re.compile(r"\bmine\b"))
    await expect(chip(page_b, row.pk, "👍")).not_to_have_class(re.compile(r"\bmine\b"))

    await chip(page_b, row.pk, "👍").click()  # bob adds his to alice's
    for page in (page_a, page_b):
        await expect(chip(page, row.pk, "👍").locator(".count")).to_have_text("2")
    await expect(chip(page_b, row.pk, "👍")).to_have_class(re.compile(r"\bmine\b"))
    await expect(chip(page_b, row.pk, "👍")).to_have_attribute(
        "title", f"{alice.username}, {bob.username}"
    )

    await chip(page_a, row.pk, "👍").click()  # alice takes hers back
    for page in (page_a, page_b):
        await expect(chip(page, row.pk, "👍").locator(".count")).to_have_text("1")
        await expect(chip(page, row.pk, "👍")).to_have_attribute("title", bob.username)
    await expect(chip(page_a, row.pk, "👍")).not_to_have_class(re.compile(r"\bmine\b"))

    await psql(
        db_url,
        "INSERT INTO chat_reaction (message_id, user_id, emoji)"
        f" VALUES ({row.pk}, {alice.pk}, '🎉')",
    )
    for page in (page_a, page_b):
        await expect(chip(page, row.pk, "🎉").locator(".count")).to_have_text("1")
    await expect(chip(page_a, row.pk, "🎉")).to_have_class(re.compile(r"\bmine\b"))

    # History and the stream together count each reaction once: a reload shows the same.
    expected = ["👍1", "🎉1"]
    for page in (page_a, page_b):
        shown = page.locator(f"li.message[data-id='{row.pk}'] .reaction")
        await expect(shown).to_have_text(expected)
        await enter_room(page, room)
        await expect(shown).to_have_text(expected)
    await psql(db_url, f"DELETE FROM chat_reaction WHERE message_id = {row.pk} AND emoji = '🎉'")
    for page in (page_a, page_b):
        await expect(chip(page, row.pk, "🎉")).to_have_count(0)
        await expect(chip(page, row.pk, "👍")).to_have_count(1)

    # An edit changes the text, not the reactions (the PATCH answer and the stream's
    # message.updated carry no reactions).
    own = await send(page_b, "bob's own")
    own_id = int(await own.get_attribute("data-id") or 0)
    await own.locator("button.add-reaction").click()
    await own.locator(".palette button[data-emoji='😮']").click()
    await expect(chip(page_a, own_id, "😮").locator(".count")).to_have_text("1")
    await own.locator("button.edit").click()
    editor = page_b.locator("li.message.editing textarea")
    await editor.fill("bob's own, edited")
    await editor.press("Enter")
    for page in (page_a, page_b):
        edited = page.locator(f"li.message[data-id='{own_id}']")
        await expect(edited.locator(".text")).to_have_text("bob's own, edited")
        await expect(chip(page, own_id, "😮").locator(".count")).to_have_text("1")


@browser_test
async def test_reactions_committed_before_the_stream_opens_are_filled_in_once(
    open_page: OpenPage, room: Room, alice: AbstractUser, bob: AbstractUser, db_url: str
) -> None:
    """The page fills what committed between its render and its stream's open from the
    history API's changes; a reaction there is a reaction (not a message), counted once."""
    await room.members.aadd(alice.pk)
    await psql(db_url, insert_sql(room.slug, "react in the gap"))
    row = await ChatMessage.objects.aget(room=room, text="react in the gap")
    page = await open_page(alice)
    await page.context.add_init_script("delete window.SharedWorker;")  # its request can be held
    held, release = asyncio.Event(), asyncio.Event()

    async def hold(route: Route) -> None:
        held.set()
        await release.wait()
        await route.continue_()

    await page.route("**/events", hold)
    try:
        await page.goto(f"/rooms/{room.slug}/")
        await asyncio.wait_for(held.wait(), DEADLINE)
        await psql(
            db_url,
            "INSERT INTO chat_reaction (message_id, user_id, emoji)"
            f" VALUES ({row.pk}, {bob.pk}, '👍'), ({row.pk}, {alice.pk}, '👍')",
        )
    finally:
        release.set()
    await expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    await expect(chip(page, row.pk, "👍").locator(".count")).to_have_text("2")
    await psql(db_url, insert_sql(room.slug, "marker"))
    await expect(texts(page)).to_have_text(["react in the gap", "marker"])  # no stray items
    await expect(page.locator("#messages > li.message")).to_have_count(2)
    await expect(chip(page, row.pk, "👍").locator(".count")).to_have_text("2")
    await expect(chip(page, row.pk, "👍")).to_have_class(re.compile(r"\bmine\b"))


# -- 13.1, 13.2 presence and typing -------------------------------------------------------------


def here(page: Page) -> Locator:
    return page.locator("#presence .person")


@browser_test
async def test_who_is_here_and_who_is_typing(
    open_page: OpenPage,
    room: Room,
    alice: AbstractUser,
    bob: AbstractUser,
    make_user: Callable[..., User],
) -> None:
    """Alice has joined (shared /events), bob and carol only look (the room's stream)."""
    carol = await asyncio.to_thread(make_user, "carol")
    await room.members.aadd(alice.pk)
    page_a, page_b, page_c = await open_page(alice), await open_page(bob), await open_page(carol)
    await enter_room(page_a, room)
    await expect(here(page_a)).to_have_text([alice.username])
    await enter_room(page_b, room)
    both = sorted([alice.username, bob.username])
    await expect(here(page_b)).to_have_text(both)  # asked on load
    await expect(here(page_a)).to_have_text(both)  # presence.joined, live
    await enter_room(page_c, room)
    await expect(here(page_a)).to_have_text(sorted([*both, carol.username]))

    # Bob types ten characters: one POST /typing (at most one per 3 s), alice sees it.
    posts: list[str] = []
    page_b.on("request", lambda r: posts.append(r.url) if r.url.endswith("/typing") else None)
    typed_at = time.monotonic()
    await page_b.locator("textarea[name=text]").press_sequentially("hello ther")
    await expect(page_a.locator("#typing")).to_have_text(f"{bob.username} is typing…")
    if time.monotonic() - typed_at < 2.5:  # still inside one 3 s window on this machine
        assert len(posts) == 1, posts
    # Both type on. A signal is shown for 5 s and sent at most every 3 s, so while both keep
    # typing carol sees both names (however slow this machine is to show the first one).
    names = sorted([alice.username, bob.username])
    line_c = page_c.locator("#typing")
    for _ in range(int(DEADLINE)):
        for page in (page_a, page_b):
            await page.locator("textarea[name=text]").press("x")
        try:
            await expect(line_c).to_have_text(
                f"{names[0]} and {names[1]} are typing…", timeout=1000
            )
            break
        except AssertionError:
            continue
    else:
        raise AssertionError(f"carol never saw both typing: {await line_c.text_content()!r}")
    assert alice.username not in (await page_a.locator("#typing").text_content() or "")  # not me

    # Bob's message arrives: he is no longer typing, at once (not after 5 s).
    await page_b.locator("textarea[name=text]").fill("hello there!")
    await page_b.locator("textarea[name=text]").press("Enter")
    await expect(message(page_c, "hello there!")).to_have_count(1)
    assert bob.username not in (await line_c.text_content() or "")
    # Alice stops without sending: her name goes after 5 s.
    await expect(line_c).to_have_text("")

    await page_b.close()
    await expect(here(page_a)).to_have_text(sorted([alice.username, carol.username]))
    await expect(here(page_c)).to_have_text(sorted([alice.username, carol.username]))


# -- 13.5 a conversation, not a log -------------------------------------------------------------


def insert_at(room: str, text: str, author: str, when: datetime) -> str:
    """A psql INSERT with a chosen created_at (a conversation's past)."""
    return (
        "INSERT INTO chat_chatmessage (room_id, author, text, created_at) VALUES "
        f"('{room}', '{author}', '{text}', '{when.isoformat()}')"
    )


async def list_rows(page: Page) -> list[str]:
    """The list as the reader sees it: "day:<label>", or "<author>:<text>" with "+" for a
    message grouped under the one before."""
    rows: list[str] = await page.locator("#messages > li").evaluate_all(
        """items => items.map(li => li.classList.contains("day") ? `day:${li.textContent}`
            : li.classList.contains("message")
            ? `${li.classList.contains("grouped") ? "+" : ""}${li.message.author}:${
                li.querySelector(".text").textContent}`
            : li.className)"""
    )
    return rows


@browser_test
async def test_messages_group_by_author_and_days_are_separated(
    open_page: OpenPage, room: Room, alice: AbstractUser, db_url: str
) -> None:
    page = await open_page(alice)
    await page.goto("/accounts/login/")  # any page: the browser's zone, to place "today"
    zone = ZoneInfo(await page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone"))
    now = datetime.now(zone)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    earlier = today - timedelta(days=9, hours=-10)
    yesterday = today - timedelta(days=1) + timedelta(hours=9)
    base = max(now - timedelta(minutes=25), today + timedelta(minutes=1))  # all of it today
    rows = [
        ("old news", "bea", earlier),
        ("morning", "bea", yesterday),
        ("still morning", "bea", yesterday + timedelta(minutes=4)),
        ("hi all", "bea", base),
        ("two minutes on", "bea", base + timedelta(minutes=2)),
        ("six minutes on, a new group", "bea", base + timedelta(minutes=8)),
        ("carl answers", "carl", base + timedelta(minutes=9)),
        ("carl again", "carl", base + timedelta(minutes=10)),
    ]
    await psql(db_url, *(insert_at(room.slug, *row) for row in rows))
    await enter_room(page, room)
    old_label = await page.evaluate(
        """iso => new Date(iso).toLocaleDateString([], {weekday: "long", day: "numeric",
            month: "long", ...(new Date(iso).getFullYear() !== new Date().getFullYear()
            ? {year: "numeric"} : {})})""",
        earlier.isoformat(),
    )
    assert str(earlier.day) in old_label
    assert old_label not in ("Today", "Yesterday")
    expected = [
        f"day:{old_label}",
        "bea:old news",
        "day:Yesterday",
        "bea:morning",
        "+bea:still morning",
        "day:Today",
        "bea:hi all",
        "+bea:two minutes on",
        "bea:six minutes on, a new group",
        "carl:carl answers",
        "+carl:carl again",
    ]
    assert await list_rows(page) == expected
    # A grouped message keeps its author for screen readers, and its full date on hover.
    grouped = page.locator("#messages > li.message.grouped").first
    await expect(grouped.locator(".author")).to_have_text("bea")
    assert str(yesterday.year) in (await grouped.locator(".text").get_attribute("title") or "")
    assert str(earlier.year) in (
        await page.locator("#messages time").first.get_attribute("title") or ""
    )

    # Live: a message of mine starts a group; my next one joins it.
    await send(page, "mine now")
    await send(page, "mine again")
    me = alice.username
    await expect(page.locator("#messages > li")).to_have_count(len(expected) + 2)
    assert (await list_rows(page))[-2:] == [f"{me}:mine now", f"+{me}:mine again"]

    # Edit and Delete are there on hover and on keyboard focus only (not hidden from it).
    mine = page.locator("#messages > li.message.own").last
    edit, actions = mine.locator("button.edit"), mine.locator(".actions")
    await page.mouse.move(0, 0)
    await expect(actions).to_have_css("opacity", "0")
    await mine.hover()
    await expect(actions).to_have_css("opacity", "1")
    await page.mouse.move(0, 0)
    await expect(actions).to_have_css("opacity", "0")
    await tab_to(page, "li.message.own:last-child button.edit", backwards=True)
    await expect(edit).to_be_focused()
    await expect(actions).to_have_css("opacity", "1")


# -- 13.6 the composer --------------------------------------------------------------------------


@browser_test
async def test_the_composer_grows_counts_keeps_drafts_and_edits_the_last_message(
    open_page: OpenPage, room: Room, alice: AbstractUser
) -> None:
    other = await Room.objects.acreate(slug=f"{room.slug}-b", title="Other")
    page = await open_page(alice)
    await enter_room(page, room)
    box = page.locator("textarea[name=text]")
    height = "el => el.getBoundingClientRect().height"

    one_line = await box.evaluate(height)
    await box.fill("a\nb\nc\nd")
    four_lines = await box.evaluate(height)
    assert four_lines > one_line + 30, (one_line, four_lines)
    await box.fill("\n".join("x" * 40))
    capped = await box.evaluate(height)
    assert four_lines < capped < 300, capped
    assert await box.evaluate("el => el.scrollHeight > el.clientHeight")  # it scrolls inside

    count = page.locator("#send-count")
    await box.fill("y" * 3000)
    await expect(count).to_be_hidden()
    await box.fill("y" * 3900)
    await expect(count).to_have_text("100 characters left")
    await box.fill("y" * 4000)
    await expect(count).to_have_text("0 characters left")

    # A draft per room survives a reload and a visit elsewhere; sending clears it.
    await box.fill("half a thought")
    await page.reload()
    await expect(box).to_have_value("half a thought")
    await expect(box).to_have_css("height", f"{one_line}px")
    await enter_room(page, other)
    await expect(box).to_have_value("")
    await enter_room(page, room)
    await expect(box).to_have_value("half a thought")
    await box.fill("my last words")
    await box.press("Enter")
    await expect(message(page, "my last words")).to_have_count(1)
    await page.reload()
    await expect(box).to_have_value("")

    # Up in the empty box edits my last message.
    await box.focus()
    await box.press("ArrowUp")
    editor = page.locator("li.message.editing textarea")
    await expect(editor).to_be_focused()
    await expect(editor).to_have_value("my last words")
    await editor.press("Escape")
    await expect(editor).to_have_count(0)


@browser_test
async def test_on_a_touch_screen_enter_is_a_new_line_and_the_button_sends(
    open_page: OpenPage, room: Room, alice: AbstractUser
) -> None:
    page = await open_page(alice, phone=True)
    await enter_room(page, room)
    box = page.locator("textarea[name=text]")
    await expect(page.locator("#send-hint")).to_have_text("Enter for a new line; the button sends")
    await box.press_sequentially("first line")
    await box.press("Enter")
    await box.press_sequentially("second line")
    await expect(box).to_have_value("first line\nsecond line")
    await page.locator("#send button[type=submit]").tap()
    await expect(message(page, "first line\nsecond line")).to_have_count(1)
    await expect(box).to_have_value("")
    await expect(page.locator("#messages > li.message")).to_have_count(1)


# -- 13.7 the connection indicator --------------------------------------------------------------

INDICATOR_SECONDS = 3.0  # the indicator tells a dead stream within this


@browser_test
async def test_the_indicator_follows_a_network_blip(
    open_page: OpenPage, room: Room, alice: AbstractUser, db_url: str
) -> None:
    """Alice's page on the shared /events (SharedWorker; then a leader tab, without one), an
    anonymous one on the room's stream: offline shows at once, and "connected" comes back
    with the stream itself."""
    await room.members.aadd(alice.pk)
    leader = await open_page(alice)
    await leader.add_init_script("delete window.SharedWorker;")
    for n, page in enumerate([await open_page(alice), leader, await open_page()]):
        await enter_room(page, room)
        connection = page.locator("#connection")
        await page.context.set_offline(True)
        await expect(connection).to_have_attribute("data-state", "offline")
        await page.context.set_offline(False)
        await expect(connection).to_have_attribute("data-state", "connected")
        await psql(db_url, insert_sql(room.slug, f"after the blip {n}"))  # and it is live
        await expect(message(page, f"after the blip {n}")).to_have_count(1)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
@browser_test
async def test_the_indicator_leaves_connected_within_seconds_when_the_server_stops(
    sig: signal.Signals,
    open_page: OpenPage,
    make_server: Callable[..., Server],
    room: Room,
    alice: AbstractUser,
) -> None:
    await room.members.aadd(alice.pk)
    srv = await asyncio.to_thread(make_server)
    pages = [await open_page(alice, base_url=srv.url), await open_page(base_url=srv.url)]
    for page in pages:
        await enter_room(page, room)
    # SIGTERM: hypercorn serves open streams for its graceful timeout (3 s here) and events
    # still flow meanwhile, so "connected" is true until the process is gone. From then on:
    await asyncio.to_thread(srv.stop, sig)
    started = time.monotonic()
    for page in pages:
        await expect(page.locator("#connection")).not_to_have_attribute(
            "data-state", "connected", timeout=INDICATOR_SECONDS * 1000
        )
    took = time.monotonic() - started
    assert took < INDICATOR_SECONDS, took
    for page in pages:
        await expect(page.locator("#connection")).to_have_attribute(
            "data-state", re.compile("^(reconnecting|offline)$")
        )
