"""The workspace in the browser (issue 12, points 3, 4, 6, 7, 8): real Chromium, real servers.

The sidebar's live unread and mention badges and the title's total; switching rooms in the
page (URL, history, back and forward, no reload); read state synced between two logged-in
browsers; tabs sharing one /events stream (SharedWorker, and the leader-tab fallback with its
hand-over); the notification permission flow. Fixtures and helpers come from
tests/test_browser.py.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable

import pytest
from django.contrib.auth.models import AbstractUser
from playwright.async_api import BrowserContext, Page, Route, expect

from chat.models import Room

from .helpers import DEADLINE, unique, wait_until_async
from .servers import OUTPUT_DIR, Browserless, Server, insert_sql, psql
from .test_browser import (  # fixtures and helpers, not tests
    OpenPage,
    alice,
    bob,
    browser,
    browser_test,
    chromium,
    message,
    open_page,
    send,
    texts,
)

__all__ = ["alice", "bob", "browser", "chromium", "open_page"]  # fixtures pytest finds by name

HAND_OVER_SECONDS = 3.0  # the leader closes: another tab holds the stream within this
NO_SHARED_WORKER = "delete window.SharedWorker;"  # the fallback: a leader tab over locks


def joined_room(user: AbstractUser, title: str) -> Room:
    """A public room ``user`` has joined (in their sidebar and on their /events stream)."""
    room = Room.objects.create(slug=unique("ws"), title=title)
    room.members.add(user.pk)
    return room


@pytest.fixture
def rooms_of_alice(alice: AbstractUser) -> tuple[Room, Room]:
    return joined_room(alice, "Alpha"), joined_room(alice, "Beta")


def entry(page: Page, room: Room) -> object:
    return page.locator(f"#sidebar li.room-entry[data-room='{room.slug}']")


async def open_room(page: Page, room: Room) -> None:
    """Open the room page; wait until its stream is open and the sidebar lists the room."""
    await page.goto(f"/rooms/{room.slug}/")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    await expect(page.locator(f"#sidebar li.current[data-room='{room.slug}']")).to_have_count(1)


async def user_streams(server: Server) -> int:
    status, body = await server.health_async()
    assert status == 200, body
    count: int = body["user_streams"]
    return count


# -- the sidebar -----------------------------------------------------------------------------


@browser_test
async def test_sidebar_counts_unread_and_mentions_live_and_the_title_adds_them_up(
    open_page: OpenPage, rooms_of_alice: tuple[Room, Room], alice: AbstractUser, db_url: str
) -> None:
    alpha, beta = rooms_of_alice
    page = await open_page(alice)
    await open_room(page, alpha)
    await expect(page).to_have_title("Alpha · pgchat")
    beta_entry = page.locator(f"#sidebar li[data-room='{beta.slug}']")
    await expect(beta_entry.locator(".unread")).to_have_count(0)

    await psql(
        db_url, insert_sql(beta.slug, "one"), insert_sql(beta.slug, f"hey @{alice.username}, two")
    )
    await expect(beta_entry.locator(".unread")).to_have_text("2")
    await expect(beta_entry.locator(".mentions")).to_have_text("@1")
    await expect(page).to_have_title("(2) Alpha · pgchat")
    # The room being read counts nothing: a message there is read at once.
    await psql(db_url, insert_sql(alpha.slug, "seen here"))
    await expect(message(page, "seen here")).to_have_count(1)
    await psql(db_url, insert_sql(beta.slug, "three"))  # a marker: alpha's count came before
    await expect(beta_entry.locator(".unread")).to_have_text("3")
    await expect(page.locator(f"#sidebar li[data-room='{alpha.slug}'] .unread")).to_have_count(0)
    await expect(page).to_have_title("(3) Alpha · pgchat")
    OUTPUT_DIR.mkdir(exist_ok=True)
    await page.screenshot(path=OUTPUT_DIR / "workspace-sidebar.png")


@browser_test
async def test_switching_rooms_happens_in_the_page_and_back_goes_back(
    open_page: OpenPage, rooms_of_alice: tuple[Room, Room], alice: AbstractUser, db_url: str
) -> None:
    alpha, beta = rooms_of_alice
    await psql(db_url, insert_sql(alpha.slug, "in alpha"), insert_sql(beta.slug, "in beta"))
    page = await open_page(alice)
    await open_room(page, alpha)
    await page.evaluate("window.__samePage = 'still here'")
    beta_entry = page.locator(f"#sidebar li[data-room='{beta.slug}']")
    await expect(beta_entry.locator(".unread")).to_have_text("1")

    await beta_entry.locator("a").click()
    await page.wait_for_url(f"**/rooms/{beta.slug}/")
    await expect(page.locator("h1")).to_have_text("Beta")
    await expect(texts(page)).to_have_text(["in beta"])
    await expect(page.locator("#messages .divider")).to_have_text("New messages")
    await expect(page.locator(f"#sidebar li.current[data-room='{beta.slug}']")).to_have_count(1)
    await expect(beta_entry.locator(".unread")).to_have_count(0)  # read by being shown
    await send(page, "written in beta")  # the send box now writes to beta
    assert await Room.objects.filter(slug=beta.slug, messages__text="written in beta").aexists()
    await psql(db_url, insert_sql(beta.slug, "live in beta"))  # beta's changes are live
    await expect(texts(page)).to_have_text(["in beta", "written in beta", "live in beta"])

    await page.go_back()
    await page.wait_for_url(f"**/rooms/{alpha.slug}/")
    await expect(page.locator("h1")).to_have_text("Alpha")
    await expect(texts(page)).to_have_text(["in alpha"])
    await page.go_forward()
    await expect(page.locator("h1")).to_have_text("Beta")
    await expect(texts(page)).to_have_text(["in beta", "written in beta", "live in beta"])
    assert await page.evaluate("window.__samePage") == "still here"  # never reloaded


@browser_test
async def test_jump_to_latest_appears_when_scrolled_up(
    open_page: OpenPage, rooms_of_alice: tuple[Room, Room], alice: AbstractUser, db_url: str
) -> None:
    alpha, _ = rooms_of_alice
    await psql(
        db_url,
        "INSERT INTO chat_chatmessage (room_id, author, text) SELECT "
        f"'{alpha.slug}', 'ops', 'line ' || n FROM generate_series(1, 40) n",
    )
    page = await open_page(alice)
    await open_room(page, alpha)
    jump = page.get_by_role("button", name="Jump to latest")
    await expect(jump).to_be_hidden()
    await page.locator("#scroller").evaluate("s => { s.scrollTop = 0; }")
    await expect(jump).to_be_visible()
    await jump.click()
    await expect(message(page, "line 40")).to_be_in_viewport()
    await expect(jump).to_be_hidden()


@browser_test
async def test_read_state_is_synced_between_two_browsers(
    open_page: OpenPage, rooms_of_alice: tuple[Room, Room], alice: AbstractUser, db_url: str
) -> None:
    """Alice on two devices: one is elsewhere and shows alpha unread; she reads alpha on the
    other, which posts the read; the first gets room.read and clears its badge live."""
    alpha, beta = rooms_of_alice
    laptop, phone = await open_page(alice), await open_page(alice)
    await open_room(laptop, beta)
    await open_room(phone, beta)
    await psql(db_url, insert_sql(alpha.slug, "read me"))
    for page in (laptop, phone):
        await expect(page.locator(f"#sidebar li[data-room='{alpha.slug}'] .unread")).to_have_text(
            "1"
        )

    await phone.locator(f"#sidebar li[data-room='{alpha.slug}'] a").click()
    await expect(message(phone, "read me")).to_have_count(1)
    await expect(laptop.locator(f"#sidebar li[data-room='{alpha.slug}'] .unread")).to_have_count(0)
    await expect(laptop).to_have_title("Beta · pgchat")


# -- one connection per browser --------------------------------------------------------------


async def tabs(context: BrowserContext, room: Room, count: int, errors: list[str]) -> list[Page]:
    pages = []
    for _ in range(count):
        page = await context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await open_room(page, room)
        pages.append(page)
    return pages


@browser_test
@pytest.mark.parametrize("kind", ["shared-worker", "leader-tab"])
async def test_five_tabs_share_one_stream_and_survive_losing_its_holder(
    open_page: OpenPage,
    make_server: Callable[..., Server],
    rooms_of_alice: tuple[Room, Room],
    alice: AbstractUser,
    db_url: str,
    kind: str,
) -> None:
    """Five tabs of one browser profile hold ONE /events stream. The tab holding it closes
    (the leader; with a SharedWorker, every tab but one): within 3 s another holds it, and a
    message written during the hand-over reaches every remaining tab, once."""
    alpha, _ = rooms_of_alice
    srv = await asyncio.to_thread(make_server)  # its own process: only these tabs' streams
    first = await open_page(alice, base_url=srv.url)
    context = first.context
    if kind == "leader-tab":
        await context.add_init_script(NO_SHARED_WORKER)
    errors: list[str] = []
    await first.close()
    pages = await tabs(context, alpha, 5, errors)
    await wait_until_async(lambda: streams_are(srv, 1), what="one /events stream")
    assert await user_streams(srv) == 1
    await psql(db_url, insert_sql(alpha.slug, "before the hand-over"))  # every tab has a token
    for page in pages:
        await expect(message(page, "before the hand-over")).to_have_count(1)

    if kind == "leader-tab":
        leaders = [
            p
            for p in pages
            if await p.evaluate("document.documentElement.dataset.eventsLeader === 'yes'")
        ]
        assert len(leaders) == 1, "one leader"
        closing = leaders
    else:
        closing = pages[:-1]
    remaining = [p for p in pages if p not in closing]
    started = time.monotonic()
    for page in closing:
        await page.close()
    await psql(db_url, insert_sql(alpha.slug, "during the hand-over"))
    for page in remaining:
        await expect(message(page, "during the hand-over")).to_have_count(1)
    handed_over = time.monotonic() - started
    assert handed_over < HAND_OVER_SECONDS, f"hand-over took {handed_over:.2f} s"
    if kind == "leader-tab":
        holders = [
            p
            for p in remaining
            if await p.evaluate("document.documentElement.dataset.eventsLeader === 'yes'")
        ]
        assert len(holders) == 1, "a new leader"
    await psql(
        db_url, insert_sql(alpha.slug, "after the hand-over")
    )  # a duplicate would precede it
    for page in remaining:
        await expect(texts(page)).to_have_text(
            ["before the hand-over", "during the hand-over", "after the hand-over"]
        )
    await wait_until_async(lambda: streams_are(srv, 1), what="still one stream")
    assert not errors, errors


async def streams_are(server: Server, count: int) -> bool:
    return await user_streams(server) == count


# -- notifications ---------------------------------------------------------------------------

RECORD_NOTIFICATIONS = """
(() => {
  window.__notifications = [];
  window.__permissionRequests = 0;
  window.__hidden = false;
  const Real = window.Notification;
  class Recorded extends Real {
    constructor(title, options) {
      super(title, options);
      window.__notifications.push({ title, body: options && options.body });
    }
  }
  Recorded.requestPermission = (...args) => {
    window.__permissionRequests += 1;
    return Real.requestPermission(...args);
  };
  Object.defineProperty(Recorded, "permission", { get: () => Real.permission });
  window.Notification = Recorded;
  // The test says when the tab is hidden (a headless page is always visible).
  Object.defineProperty(Document.prototype, "visibilityState", {
    get: () => (window.__hidden ? "hidden" : "visible"),
  });
})();
"""


@browser_test
async def test_notifications_are_asked_for_by_a_button_and_raised_for_mentions_when_hidden(
    open_page: OpenPage, rooms_of_alice: tuple[Room, Room], alice: AbstractUser, db_url: str
) -> None:
    alpha, beta = rooms_of_alice
    page = await open_page(alice)
    await page.context.add_init_script(RECORD_NOTIFICATIONS)
    await open_room(page, alpha)
    enable = page.get_by_role("button", name="Enable notifications")
    await expect(enable).to_be_visible()
    assert await page.evaluate("window.__permissionRequests") == 0, "asked on load"
    assert await page.evaluate("Notification.permission") == "default"

    await page.context.grant_permissions(["notifications"])
    await enable.click()
    await expect(enable).to_be_hidden()
    assert await page.evaluate("window.__permissionRequests") == 1

    await page.evaluate("window.__hidden = true")
    await psql(
        db_url,
        insert_sql(beta.slug, "no mention here", author="bea"),
        insert_sql(beta.slug, f"@{alice.username} look at this", author="bea"),
    )
    await expect(page.locator(f"#sidebar li[data-room='{beta.slug}'] .mentions")).to_have_text("@1")
    await page.wait_for_function("() => window.__notifications.length > 0")
    assert await page.evaluate("window.__notifications") == [
        {"title": "bea in Beta", "body": f"@{alice.username} look at this"}
    ]


# -- members, direct messages, joining -------------------------------------------------------


@browser_test
async def test_owner_adds_and_removes_a_member_who_sees_it_live_and_a_dm_opens_in_the_page(
    open_page: OpenPage, room: Room, alice: AbstractUser, bob: AbstractUser
) -> None:
    """Alice owns a private room: she adds bob from its members panel (his sidebar lists it
    at once), opens a DM with him from there (both sidebars list it under Direct messages,
    named by the other person), then removes him (it leaves his sidebar at once)."""
    secret = await Room.objects.acreate(
        slug=unique("secret"), title="Secret", is_private=True, owner_id=alice.pk
    )
    await secret.members.aadd(alice.pk)
    page_a, page_b = await open_page(alice), await open_page(bob)
    await open_room(page_a, secret)
    await page_b.goto(f"/rooms/{room.slug}/")  # a public room bob has not joined
    await expect(page_b.locator("#connection")).to_have_attribute("data-state", "connected")
    bobs_entry = page_b.locator(f"#sidebar li.room-entry[data-room='{secret.slug}']")
    await expect(bobs_entry).to_have_count(0)

    panel = page_a.locator("#members")
    await expect(panel.locator(".member")).to_have_count(1)
    await panel.get_by_label("Username to add").fill(bob.username)
    await panel.get_by_role("button", name="Add member").click()
    await expect(panel.locator(f".member[data-user='{bob.username}']")).to_have_count(1)
    await expect(bobs_entry).to_have_text("Secret")

    await panel.get_by_role("button", name=f"Direct message {bob.username}").click()
    await page_a.wait_for_url(re.compile(r"/rooms/dm-\d+-\d+/$"))
    await expect(page_a.locator("h1")).to_have_text(bob.username)
    await expect(page_a.locator("#dm-heading")).to_be_visible()
    await expect(page_a.locator("#my-dms li.current")).to_have_text(bob.username)
    await expect(page_b.locator("#my-dms li")).to_have_text(alice.username)
    await send(page_a, f"hi @{bob.username}")
    await expect(page_b.locator("#my-dms li .unread")).to_have_text("1")
    await expect(page_b.locator("#my-dms li .mentions")).to_have_text("@1")

    await page_a.go_back()
    await expect(page_a.locator("h1")).to_have_text("Secret private")
    remove = page_a.get_by_role("button", name=f"Remove {bob.username}")
    await remove.click()
    await expect(panel.locator(f".member[data-user='{bob.username}']")).to_have_count(0)
    await expect(bobs_entry).to_have_count(0)
    assert not await secret.members.filter(pk=bob.pk).aexists()


@browser_test
async def test_public_rooms_are_joined_from_browse_and_left_from_the_room(
    open_page: OpenPage, room: Room, alice: AbstractUser
) -> None:
    page = await open_page(alice)
    home = await asyncio.to_thread(joined_room, alice, "Home")
    await open_room(page, home)
    browse = page.locator("#browse")
    await browse.locator("summary").click()
    await browse.locator(f"li[data-room='{room.slug}'] button.join").click()
    await page.wait_for_url(f"**/rooms/{room.slug}/")
    await expect(page.locator(f"#my-rooms li.current[data-room='{room.slug}']")).to_have_count(1)
    await expect(browse.locator(f"li[data-room='{room.slug}']")).to_have_count(0)
    assert await room.members.filter(pk=alice.pk).aexists()

    await page.get_by_role("button", name="Leave room").click()
    await expect(page.locator(f"#my-rooms li[data-room='{room.slug}']")).to_have_count(0)
    await expect(browse.locator(f"li[data-room='{room.slug}']")).to_have_count(1)
    await expect(page.get_by_role("button", name="Join room")).to_be_visible()
    assert not await room.members.filter(pk=alice.pk).aexists()


# -- the shared stream under faults ----------------------------------------------------------


@browser_test
async def test_a_joined_room_catches_up_after_the_server_restarts(
    open_page: OpenPage,
    make_server: Callable[..., Server],
    rooms_of_alice: tuple[Room, Room],
    alice: AbstractUser,
    db_url: str,
) -> None:
    """The SharedWorker's stream dies with the server; every tab says so, the worker's
    EventSource resumes with its token, and each tab gets exactly what it missed."""
    alpha, beta = rooms_of_alice
    srv = await asyncio.to_thread(make_server)
    page = await open_page(alice, base_url=srv.url)
    second = await page.context.new_page()
    await open_room(page, alpha)
    await open_room(second, alpha)
    await send(page, "before the restart")
    await page.evaluate("window.__samePage = 'still here'")

    await asyncio.to_thread(srv.stop)
    for tab in (page, second):
        await expect(tab.locator("#connection")).to_have_attribute("data-state", "reconnecting")
    missed = [f"missed while down {n}" for n in range(3)]
    await psql(
        db_url, *(insert_sql(alpha.slug, text) for text in missed), insert_sql(beta.slug, "b")
    )
    await asyncio.to_thread(srv.start)
    await psql(db_url, insert_sql(alpha.slug, "marker"))  # a late duplicate would precede it
    for tab in (page, second):
        await expect(tab.locator("#connection")).to_have_attribute("data-state", "connected")
        await expect(texts(tab)).to_have_text(["before the restart", *missed, "marker"])
        await expect(tab.locator(f"#sidebar li[data-room='{beta.slug}'] .unread")).to_have_text("1")
    assert await page.evaluate("window.__samePage") == "still here"  # not reloaded


@browser_test
async def test_a_joined_room_shows_what_committed_between_render_and_stream_open(
    open_page: OpenPage, rooms_of_alice: tuple[Room, Room], alice: AbstractUser, db_url: str
) -> None:
    """/events starts from "now" for a tab with no token, and the page was rendered earlier:
    what committed in between is read from the history API after the page's cursor, once.
    (The leader-tab fallback, so that the page's own request can be held.)"""
    alpha, _ = rooms_of_alice
    page = await open_page(alice)
    await page.context.add_init_script(NO_SHARED_WORKER)
    held, release = asyncio.Event(), asyncio.Event()

    async def hold(route: Route) -> None:
        held.set()
        await release.wait()
        await route.continue_()

    await page.route("**/events", hold)
    try:
        await page.goto(f"/rooms/{alpha.slug}/")
        await asyncio.wait_for(held.wait(), DEADLINE)
        await psql(db_url, insert_sql(alpha.slug, "in the gap"))
    finally:
        release.set()
    await expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    await expect(texts(page)).to_have_text(["in the gap"])
    await psql(db_url, insert_sql(alpha.slug, "marker"))  # a second copy would precede it
    await expect(texts(page)).to_have_text(["in the gap", "marker"])


@browser_test
async def test_mentions_are_highlighted_for_everyone_and_stay_text(
    open_page: OpenPage, rooms_of_alice: tuple[Room, Room], alice: AbstractUser, db_url: str
) -> None:
    alpha, _ = rooms_of_alice
    text = f"<b>@{alice.username}</b> and @bob, see ann@example.com"
    await psql(db_url, insert_sql(alpha.slug, text))
    anonymous, hers = await open_page(), await open_page(alice)
    await anonymous.goto(f"/rooms/{alpha.slug}/")
    await open_room(hers, alpha)
    await psql(db_url, insert_sql(alpha.slug, f"live @{alice.username}."))
    for page in (anonymous, hers):
        await expect(texts(page)).to_have_text([text, f"live @{alice.username}."])
        mentions = page.locator("#messages .mention")
        await expect(mentions).to_have_text([f"@{alice.username}", "@bob", f"@{alice.username}"])
        await expect(page.locator("#messages b")).to_have_count(0)
    await expect(hers.locator("#messages .mention.me")).to_have_count(2)
    await expect(anonymous.locator("#messages .mention.me")).to_have_count(0)


@browser_test
async def test_a_dm_notifies_when_hidden_and_a_hidden_tab_does_not_read(
    open_page: OpenPage,
    server: Server,
    rooms_of_alice: tuple[Room, Room],
    alice: AbstractUser,
    bob: AbstractUser,
    db_url: str,
) -> None:
    """A DM raises a notification in a hidden tab (no mention needed), and a hidden tab does
    not count as reading: the room on screen stays unread until the tab is shown."""
    alpha, _ = rooms_of_alice
    page = await open_page(alice)
    await page.context.add_init_script(RECORD_NOTIFICATIONS)
    await page.context.grant_permissions(["notifications"])
    await open_room(page, alpha)
    await expect(page.get_by_role("button", name="Enable notifications")).to_be_hidden()
    await page.evaluate("window.__hidden = true")

    async with Browserless(server.url) as person:
        await person.login(bob.username)
        opened = await person.request("POST", f"/dm/{alice.username}")
        assert opened.status_code == 201, opened.text
        dm = opened.json()["room"]
        await expect(page.locator(f"#my-dms li[data-room='{dm}']")).to_have_text(bob.username)
        posted = await person.request("POST", f"/rooms/{dm}/messages", json={"text": "psst"})
        assert posted.status_code == 201, posted.text
    await page.wait_for_function("() => window.__notifications.length > 0")
    assert await page.evaluate("window.__notifications") == [
        {"title": bob.username, "body": "psst"}
    ]

    here = page.locator(f"#sidebar li[data-room='{alpha.slug}'] .unread")
    await psql(db_url, insert_sql(alpha.slug, "while hidden"))
    await expect(message(page, "while hidden")).to_have_count(1)
    await expect(here).to_have_text("1")  # shown in the list, not read: nobody looked
    await page.evaluate(
        "window.__hidden = false; document.dispatchEvent(new Event('visibilitychange'))"
    )
    await expect(here).to_have_count(0)
    assert await page.evaluate("window.__notifications.length") == 1  # none for alpha's
