"""The chat people use: a real headless Chromium against a real hypercorn and PostgreSQL.

Hop 5 of the data path (chat/static/chat/*.js) is only proven by a browser: EventSource's
own reconnect and Last-Event-ID, textContent versus innerHTML, the CSP the browser enforces,
focus and keyboard handling. Every test here drives Chromium through Playwright's async API;
writers are real too (another browser, psql, the Django admin).

Why async Playwright: the sync API keeps an asyncio loop running in the main thread, so
Django's ORM would refuse every call there (SynchronousOnlyOperation). With the async API the
ORM is reached as the project's other async tests do (``acreate``), and the suite's sync
fixtures (``room``, ``make_user``) run between tests, outside the loop. One Chromium serves
the whole module (launching costs about a second); each test gets fresh browser contexts.

Waits are Playwright's ``expect`` with the suite's one deadline (tests/helpers.py), never
sleeps: the machine is small and shared, so it is generous and a passing run is still fast.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import httpx
import pytest
import pytest_asyncio
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, User
from playwright.async_api import (
    Browser,
    BrowserContext,
    Locator,
    Page,
    Response,
    Route,
    ViewportSize,
    async_playwright,
    expect,
)

from chat.models import ChatMessage, Room

from .helpers import DEADLINE, PASSWORD, session_cookies, unique
from .servers import OUTPUT_DIR, Browserless, Server, insert_sql, psql

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; Playwright's download is not allowed
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium keeps calling home, which floods a closed network.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SKIP_REASON = "browser tests skipped: Debian's chromium is not installed (apt-get install chromium)"
DEADLINE_MS = DEADLINE * 1000  # Playwright counts in milliseconds
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
HISTORY_PAGE = 50  # messages the room page renders (chat/messages_api.py HISTORY_LIMIT_DEFAULT)

expect.set_options(timeout=DEADLINE_MS)
Test = TypeVar("Test", bound=Callable[..., Awaitable[None]])


def browser_test(test: Test) -> Test:
    """Mark a test as driving Chromium, on the module's event loop (the browser's)."""
    marked: Test = pytest.mark.browser(pytest.mark.asyncio(loop_scope="module")(test))
    return marked


# -- the browser ---------------------------------------------------------------------------


def chromium_verdict(path: Path, ci: str | None) -> tuple[Literal["run", "skip", "fail"], str]:
    """Run when Chromium is there; without it skip on a laptop, but fail in CI, where a
    silently skipped UI suite would look green while proving nothing."""
    if path.is_file() and os.access(path, os.X_OK):
        return "run", ""
    if ci == "true":
        return "fail", (
            f"CI=true but {path} is missing, so the browser tests cannot run: install "
            "Debian's chromium (apt-get install chromium; .ci/run does this as root)"
        )
    return "skip", SKIP_REASON


@pytest.fixture(scope="module")
def chromium() -> Path:
    """The Chromium binary, or a skip (a laptop) or a failure (CI) naming the fix."""
    verdict, message = chromium_verdict(CHROMIUM, os.environ.get("CI"))
    if verdict == "fail":
        pytest.fail(message, pytrace=False)
    if verdict == "skip":
        pytest.skip(message)
    return CHROMIUM


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS
        )
        yield browser
        await browser.close()


class OpenPage(Protocol):
    def __call__(
        self,
        user: AbstractUser | None = None,
        *,
        base_url: str | None = None,
        viewport: ViewportSize = DESKTOP,
        phone: bool = False,
    ) -> Awaitable[Page]: ...


@pytest_asyncio.fixture(loop_scope="module")
async def open_page(browser: Browser, server: Server) -> AsyncIterator[OpenPage]:
    """A page in a fresh browser context (its own cookies), logged in as ``user`` if given.

    Any uncaught JavaScript error on any of the test's pages fails the test: a broken
    the page's JavaScript often still renders the server's HTML.
    """
    contexts: list[BrowserContext] = []
    errors: list[str] = []

    async def open_(
        user: AbstractUser | None = None,
        *,
        base_url: str | None = None,
        viewport: ViewportSize = DESKTOP,
        phone: bool = False,
    ) -> Page:
        context = await browser.new_context(
            base_url=base_url or server.url,
            viewport=viewport,
            is_mobile=phone,
            has_touch=phone,
            device_scale_factor=2 if phone else 1,
        )
        contexts.append(context)
        context.set_default_timeout(DEADLINE_MS)
        if user is not None:  # logged in through the real form; the browser gets the cookies
            cookies = await session_cookies(base_url or server.url, user.username)
            await context.add_cookies(
                [{"name": k, "value": v, "url": base_url or server.url} for k, v in cookies.items()]
            )
        page = await context.new_page()
        page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))
        return page

    yield open_
    for context in contexts:
        await context.close()
    assert not errors, f"uncaught JavaScript errors: {errors}"


# -- people and rooms ----------------------------------------------------------------------


@pytest.fixture
def alice(make_user: Callable[..., User]) -> User:
    return make_user("alice")


@pytest.fixture
def bob(make_user: Callable[..., User]) -> User:
    return make_user("bob")


@pytest.fixture
def staff(make_user: Callable[..., User]) -> User:
    return make_user("mod", staff=True)


@pytest.fixture
def private_room(alice: AbstractUser) -> Room:
    """A private room whose only member is alice."""
    room = Room.objects.create(slug=unique("private"), title="Secret", is_private=True)
    room.members.add(alice.pk)
    return room


# -- what is on the page -------------------------------------------------------------------


def messages(page: Page) -> Locator:
    return page.locator("#messages > li.message")


def texts(page: Page) -> Locator:
    return page.locator("#messages > li.message > .text")


def message(page: Page, text: str) -> Locator:
    """The message items whose text is exactly ``text``."""
    exact = re.compile(f"^{re.escape(text)}$")
    return messages(page).filter(has=page.locator(".text", has_text=exact))


async def message_ids(page: Page) -> list[str]:
    ids: list[str] = await messages(page).evaluate_all(
        "items => items.map(item => item.dataset.id)"
    )
    return ids


async def enter_room(page: Page, room: Room) -> Response:
    """Open the room page and wait until its stream is open."""
    response = await page.goto(f"/rooms/{room.slug}/")
    assert response is not None
    assert response.status == 200, f"{response.url}: HTTP {response.status}"
    await expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    return response


async def send(page: Page, text: str) -> Locator:
    """Type into the send box and press Enter, as a person does (on a touch screen, where
    Enter is a new line, tap Send); returns the new item."""
    box = page.locator("textarea[name=text]")
    await box.fill(text)
    if await page.evaluate("matchMedia('(hover: none) and (pointer: coarse)').matches"):
        await page.locator("#send button[type=submit]").tap()
    else:
        await box.press("Enter")
    sent = message(page, text)
    await expect(sent).to_have_count(1)
    await expect(box).to_have_value("")
    return sent


async def fetch_json(page: Page, method: str, url: str, body: Any = None) -> tuple[int, Any]:
    """A same-origin fetch() from the page, with its session and CSRF token, as api.js does."""
    status, data = await page.evaluate(
        """async ([method, url, body]) => {
            const token = (document.cookie.match(/(?:^|;\\s*)csrftoken=([^;]+)/) || [])[1];
            const response = await fetch(url, {
                method,
                headers: {"Content-Type": "application/json", "X-CSRFToken": token || ""},
                body: body === null ? undefined : JSON.stringify(body),
            });
            return [response.status, await response.json()];
        }""",
        [method, url, body],
    )
    return status, data


async def tab_to(page: Page, selector: str, *, backwards: bool = False, presses: int = 40) -> None:
    """Press Tab (or Shift+Tab) until the focused element matches ``selector``."""
    key = "Shift+Tab" if backwards else "Tab"
    for _ in range(presses):
        if await page.evaluate("s => Boolean(document.activeElement?.matches(s))", selector):
            return
        await page.keyboard.press(key)
    raise AssertionError(f"{presses} x {key} never reached {selector!r}")


# -- the chat, between people ----------------------------------------------------------------


@browser_test
async def test_two_people_see_each_others_messages_and_edits_live(
    open_page: OpenPage, room: Room, alice: AbstractUser, bob: AbstractUser
) -> None:
    """The everyday path: A writes, B sees it; B fixes a typo, A sees the fix, marked edited.
    A may not touch B's message: no control in the UI, and a 403 from the API."""
    page_a, page_b = await open_page(alice), await open_page(bob)
    await enter_room(page_a, room)
    await enter_room(page_b, room)

    await send(page_a, "hello from alice")
    seen_by_b = message(page_b, "hello from alice")
    await expect(seen_by_b).to_have_count(1)
    await expect(seen_by_b.locator(".author")).to_have_text(alice.username)

    mine_on_b = await send(page_b, "bob's tpyo")
    message_id = await mine_on_b.get_attribute("data-id")
    assert message_id, "bob's message has no data-id"
    on_a = page_a.locator(f"#messages > li.message[data-id='{message_id}']")
    await expect(on_a.locator(".text")).to_have_text("bob's tpyo")

    await mine_on_b.locator("button.edit").click()
    editor = page_b.locator("li.message.editing textarea")
    await expect(editor).to_be_focused()
    await editor.fill("bob's typo, fixed")
    await editor.press("Enter")
    await expect(on_a.locator(".text")).to_have_text("bob's typo, fixed")
    await expect(on_a.locator(".edited")).to_have_text("edited")
    await expect(page_b.locator(f"li.message[data-id='{message_id}'] .edited")).to_be_visible()

    # A has controls on A's own message (so the absence below means something) and none on B's.
    await expect(message(page_a, "hello from alice").locator("button.edit")).to_have_count(1)
    await expect(on_a.locator("button.edit, button.delete")).to_have_count(0)
    status, body = await fetch_json(
        page_a, "PATCH", f"/rooms/{room.slug}/messages/{message_id}", {"text": "hijacked"}
    )
    assert (status, body) == (403, {"error": "only its author or staff may change this message"})
    assert (await ChatMessage.objects.aget(pk=message_id)).text == "bob's typo, fixed"


@browser_test
async def test_psql_insert_and_admin_edit_reach_every_open_page(
    open_page: OpenPage,
    room: Room,
    alice: AbstractUser,
    bob: AbstractUser,
    staff: AbstractUser,
    db_url: str,
) -> None:
    """The trigger is the single source of events, so writes that bypass the web UI (psql,
    the Django admin) are exactly as live in every browser."""
    pages = [await open_page(alice), await open_page(bob)]
    for page in pages:
        await enter_room(page, room)

    await psql(db_url, insert_sql(room.slug, "typed into psql", author="ops"))
    for page in pages:
        await expect(message(page, "typed into psql")).to_have_count(1)
        await expect(message(page, "typed into psql").locator(".author")).to_have_text("ops")
    row = await ChatMessage.objects.aget(room=room, text="typed into psql")

    admin = await open_page(staff)
    await admin.goto(f"/admin/chat/chatmessage/{row.pk}/change/")
    await admin.locator("#id_text").fill("corrected in the admin")
    await admin.locator("input[name=_save]").click()
    await admin.wait_for_url("**/admin/chat/chatmessage/")
    for page in pages:
        shown = page.locator(f"#messages > li.message[data-id='{row.pk}']")
        await expect(shown.locator(".text")).to_have_text("corrected in the admin")
        await expect(shown.locator(".edited")).to_have_text("edited")
        await expect(messages(page)).to_have_count(1)


@browser_test
async def test_markup_in_a_message_is_shown_as_text_and_never_runs(
    open_page: OpenPage, room: Room, alice: AbstractUser, db_url: str
) -> None:
    """Messages come from anyone (psql included): they are text, on both paths a message
    reaches the page (rendered history and the live stream). The CSP is the second wall."""
    payload = '<img src=x onerror="window.__xss=1">'
    await psql(db_url, insert_sql(room.slug, payload, author="<b>mallory</b>"))
    page = await open_page(alice)
    fetched: list[str] = []
    page.on("request", lambda request: fetched.append(request.url))
    response = await enter_room(page, room)  # the first one arrives with the page
    await psql(db_url, insert_sql(room.slug, payload + " live"))  # the second one live
    await expect(texts(page)).to_have_text([payload, payload + " live"])
    await expect(messages(page).first.locator(".author")).to_have_text("<b>mallory</b>")
    await expect(page.locator("#messages img, #messages b")).to_have_count(0)
    assert await page.evaluate("typeof window.__xss") == "undefined"
    assert not [url for url in fetched if url.endswith("/x")], "the <img> was created"

    policy = _csp_directives(await response.header_value("content-security-policy") or "")
    scripts = policy.get("script-src", policy.get("default-src"))
    assert scripts == ["'self'"], policy  # no 'unsafe-inline', no 'unsafe-eval', no hosts
    # And the browser enforces it: an injected inline script is refused.
    violated = await asyncio.wait_for(
        page.evaluate(
            """() => new Promise(resolve => {
                document.addEventListener(
                    "securitypolicyviolation", e => resolve(e.effectiveDirective), {once: true});
                const script = document.createElement("script");
                script.textContent = "window.__inline = 1";
                document.body.append(script);
            })"""
        ),
        DEADLINE,
    )
    assert violated == "script-src-elem"
    assert await page.evaluate("typeof window.__inline") == "undefined"


@browser_test
async def test_a_bidi_override_in_a_name_shows_as_written(
    open_page: OpenPage, room: Room, alice: AbstractUser, db_url: str
) -> None:
    """A psql author "adm<U+202E>nim" once displayed as "admmin" (issue 11, point 9): its
    characters must appear left to right as written, its control shown, not obeyed; the
    name and the text are isolated from the line around them."""
    await psql(
        db_url,
        "INSERT INTO chat_chatmessage (room_id, author, text) "
        f"VALUES ('{room.slug}', E'adm\\u202Enim', E'\\u202Ereversed text')",
    )
    page = await open_page(alice)
    await enter_room(page, room)
    author = messages(page).first.locator(".author")
    await expect(author).to_have_text("adm[U+202E]nim")
    # Where each character is drawn: strictly left to right, so "nim" is not "min".
    lefts: list[float] = await author.evaluate(
        """node => {
            const text = node.firstChild, range = document.createRange(), lefts = [];
            for (let i = 0; i < text.length; i++) {
                range.setStart(text, i);
                range.setEnd(text, i + 1);
                lefts.push(range.getBoundingClientRect().left);
            }
            return lefts;
        }"""
    )
    assert lefts == sorted(lefts), lefts
    assert len(set(lefts)) == len(lefts), lefts
    assert await author.evaluate("node => node.tagName") == "BDI"
    assert await texts(page).first.get_attribute("dir") == "auto"


def _csp_directives(header: str) -> dict[str, list[str]]:
    directives = (part.split() for part in header.split(";") if part.strip())
    return {name.lower(): sources for name, *sources in directives}


async def test_private_room_refuses_non_members_everywhere(
    server: Server,
    private_room: Room,
    alice: AbstractUser,
    bob: AbstractUser,
    staff: AbstractUser,
) -> None:
    """Page, history and stream share one rule: members and staff get in, nobody else does,
    and a refusal is exactly the answer for a room that does not exist (its existence does
    not leak)."""
    base = f"/rooms/{private_room.slug}"
    urls = [f"{base}/", f"{base}/messages", f"{base}/events"]

    async def statuses(username: str | None) -> list[tuple[int, Any]]:
        async with Browserless(server.url) as person:
            if username is not None:
                await person.login(username)
            results: list[tuple[int, Any]] = []
            for url in urls:
                async with person.client.stream("GET", url) as response:
                    if response.status_code == 200:  # the stream never ends: don't read it
                        results.append((200, response.headers["content-type"].split(";")[0]))
                    elif url.endswith("/"):  # a page: the styled 404 (tests/test_error_pages.py)
                        body = (await response.aread()).decode()
                        results.append((response.status_code, "no room" in body))
                    else:
                        results.append((response.status_code, json_of(await response.aread())))
            return results

    refused = {"error": f"no room {private_room.slug!r}"}
    assert await statuses(bob.username) == [(404, True), (404, refused), (404, refused)]
    assert await statuses(None) == [(404, True), (404, refused), (404, refused)]
    allowed = [(200, "text/html"), (200, "application/json"), (200, "text/event-stream")]
    assert await statuses(alice.username) == allowed
    assert await statuses(staff.username) == allowed


def json_of(body: bytes) -> Any:
    return httpx.Response(200, content=body).json()


# -- the stream under faults ---------------------------------------------------------------


@browser_test
async def test_open_page_catches_up_after_the_server_restarts(
    open_page: OpenPage,
    make_server: Callable[..., Server],
    room: Room,
    alice: AbstractUser,
    db_url: str,
) -> None:
    """A deploy or crash kills every stream. The page says so, EventSource reconnects with
    Last-Event-ID, and the page gets exactly what it missed: no reload, no gap, no repeat."""
    srv = await asyncio.to_thread(make_server)
    page = await open_page(alice, base_url=srv.url)
    await enter_room(page, room)
    await send(page, "before the restart")
    await page.evaluate("window.__samePage = 'still here'")

    await asyncio.to_thread(srv.stop)
    connection = page.locator("#connection")
    await expect(connection).to_have_attribute("data-state", "reconnecting")
    await expect(connection).to_have_text("reconnecting…")
    missed = [f"missed while down {n}" for n in range(3)]
    await psql(db_url, *(insert_sql(room.slug, text) for text in missed))

    await asyncio.to_thread(srv.start)  # same port: the page's EventSource URL still works
    await expect(connection).to_have_attribute("data-state", "connected")
    await expect(texts(page)).to_have_text(["before the restart", *missed])
    await psql(db_url, insert_sql(room.slug, "marker"))  # a late duplicate would precede it
    await expect(texts(page)).to_have_text(["before the restart", *missed, "marker"])
    ids = await message_ids(page)
    assert len(ids) == len(set(ids)) == 5
    assert await page.evaluate("window.__samePage") == "still here"  # not reloaded


@browser_test
async def test_message_committed_between_render_and_connect_shows_once(
    open_page: OpenPage, room: Room, alice: AbstractUser, db_url: str
) -> None:
    """The page renders history up to cursor N and must stream from N, not from "now": a
    row that commits in between would otherwise never be shown."""
    page = await open_page(alice)
    held, release = asyncio.Event(), asyncio.Event()

    async def hold(route: Route) -> None:
        held.set()
        await release.wait()
        await route.continue_()

    await page.route("**/events*", hold)
    try:
        await page.goto(f"/rooms/{room.slug}/")
        await asyncio.wait_for(held.wait(), DEADLINE)
        await expect(messages(page)).to_have_count(0)  # rendered before the insert
        await psql(db_url, insert_sql(room.slug, "in the gap"))
    finally:
        release.set()
    await expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    await expect(texts(page)).to_have_text(["in the gap"])
    await psql(db_url, insert_sql(room.slug, "marker"))  # a second copy would precede it
    await expect(texts(page)).to_have_text(["in the gap", "marker"])


# -- keyboard and layout -------------------------------------------------------------------


@browser_test
async def test_keyboard_only_login_send_edit_and_delete(
    open_page: OpenPage, room: Room, alice: AbstractUser
) -> None:
    """Everything a writer does works without a mouse: Tab reaches every control, Enter
    acts, and focus lands where the next keystroke belongs."""
    page = await open_page()
    await page.goto(f"/rooms/{room.slug}/")
    await tab_to(page, "a[href^='/accounts/login/']")
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/accounts/login/**")
    await expect(page.locator("#id_username")).to_be_focused()  # autofocus
    await page.keyboard.type(alice.username)
    await page.keyboard.press("Tab")
    await expect(page.locator("#id_password")).to_be_focused()
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"**/rooms/{room.slug}/")  # back in the room, logged in
    await expect(page.locator(".whoami")).to_have_text(alice.username)

    await tab_to(page, "textarea[name=text]")
    await page.keyboard.type("typed, not clicked")
    await page.keyboard.press("Enter")
    mine = message(page, "typed, not clicked")
    await expect(mine).to_have_count(1)
    await expect(page.locator("textarea[name=text]")).to_be_focused()  # ready for the next
    message_id = await mine.get_attribute("data-id")
    assert message_id, "the message has no data-id"
    item = page.locator(f"#messages > li.message[data-id='{message_id}']")

    await tab_to(page, "li.message button.edit", backwards=True)
    await page.keyboard.press("Enter")
    await expect(item.locator("textarea")).to_be_focused()
    await page.keyboard.press("ControlOrMeta+A")
    await page.keyboard.type("typed, then edited")
    await page.keyboard.press("Enter")
    await expect(item.locator(".text")).to_have_text("typed, then edited")
    await expect(item.locator("button.edit")).to_be_focused()  # focus stays on the message

    await page.keyboard.press("Tab")
    await expect(item.locator("button.delete")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(item.locator("button.delete")).to_have_text("Really delete?")
    await page.keyboard.press("Enter")
    await expect(item.locator(".text")).to_have_text("message deleted")
    await expect(item.locator("button")).to_have_count(0)
    await expect(page.locator("textarea[name=text]")).to_be_focused()  # focus not lost
    row = await ChatMessage.objects.aget(pk=message_id)
    assert (row.text, row.deleted_at is not None) == ("typed, then edited", True)


@browser_test
@pytest.mark.parametrize(
    ("name", "viewport", "phone"), [("desktop", DESKTOP, False), ("phone", PHONE, True)]
)
async def test_room_page_layout_fits_the_screen(
    open_page: OpenPage,
    room: Room,
    alice: AbstractUser,
    db_url: str,
    name: str,
    viewport: ViewportSize,
    phone: bool,
) -> None:
    """Screenshots for a person to look at (test-output/room-<name>.png), plus the layout
    facts that matter: nothing wider than the screen, the newest message and the send box
    in view."""
    await psql(
        db_url,
        insert_sql(room.slug, "Deploy is done, the new listener is live.", author="ops"),
        insert_sql(room.slug, "Nice. " * 40 + "https://example.com/" + "a" * 80, author="bea"),
        insert_sql(room.slug, "Anyone seen the notify queue graph?", author="carlos"),
        insert_sql(room.slug, "This one gets deleted", author="bea"),
        "UPDATE chat_chatmessage SET deleted_at = now() WHERE text = 'This one gets deleted'"
        f" AND room_id = '{room.slug}'",
    )
    page = await open_page(alice, viewport=viewport, phone=phone)
    await enter_room(page, room)
    await send(page, "Yes: flat at 0.0 since Monday.\nTwo lines, too.")
    typo = await send(page, "I fixed a tpyo here")
    await fetch_json(
        page, "PATCH", f"/rooms/{room.slug}/messages/{await typo.get_attribute('data-id')}",
        {"text": "I fixed a typo here"},
    )  # fmt: skip
    await expect(message(page, "I fixed a typo here").locator(".edited")).to_be_visible()
    await page.locator("textarea[name=text]").blur()  # a screenshot without a caret

    OUTPUT_DIR.mkdir(exist_ok=True)
    await page.screenshot(path=OUTPUT_DIR / f"room-{name}.png")
    sizes = await page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert sizes[0] <= sizes[1], f"the page scrolls sideways: {sizes}"
    await expect(messages(page).last).to_be_in_viewport()
    await expect(page.locator("textarea[name=text]")).to_be_in_viewport()
    await expect(page.locator("#send button[type=submit]")).to_be_in_viewport()


# -- accounts, rooms, history ----------------------------------------------------------------


@browser_test
async def test_sign_up_creates_an_account_and_logs_in(open_page: OpenPage) -> None:
    """A newcomer can join without an admin: sign-up makes the account and a session."""
    username = unique("newcomer")
    page = await open_page()
    await page.goto("/accounts/signup/")
    await page.locator("#id_username").fill(username)
    await page.locator("#id_password1").fill(PASSWORD)
    await page.locator("#id_password2").fill(PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await page.wait_for_url("**/rooms/lobby/")
    await expect(page.locator(".whoami")).to_have_text(username)
    await expect(page.locator(".flash")).to_have_text(f"Welcome, {username}!")
    await expect(page.locator("textarea[name=text]")).to_be_visible()
    assert await get_user_model().objects.filter(username=username).aexists()


@browser_test
async def test_wrong_password_says_so_clearly(open_page: OpenPage, alice: AbstractUser) -> None:
    page = await open_page()
    await page.goto("/accounts/login/")
    await page.locator("#id_username").fill(alice.username)
    await page.locator("#id_password").fill("not-the-password")
    await page.locator("#id_password").press("Enter")
    await expect(page.get_by_role("alert")).to_have_text(
        "Wrong username or password. Please try again."
    )
    await expect(page.locator(".whoami")).to_have_count(0)


@browser_test
async def test_anonymous_reader_sees_a_public_room_live_but_no_send_box(
    open_page: OpenPage, room: Room, db_url: str
) -> None:
    """Public rooms are readable by anyone, live; writing asks you to log in."""
    await psql(db_url, insert_sql(room.slug, "already here"))
    page = await open_page()
    await enter_room(page, room)
    await psql(db_url, insert_sql(room.slug, "arrived live"))
    await expect(texts(page)).to_have_text(["already here", "arrived live"])
    await expect(page.locator(".send-login")).to_have_text("Log in or sign up to write.")
    await expect(page.locator("textarea")).to_have_count(0)
    await expect(messages(page).locator("button")).to_have_count(0)


@browser_test
async def test_room_list_shows_private_rooms_only_to_members(
    open_page: OpenPage, room: Room, private_room: Room, alice: AbstractUser, bob: AbstractUser
) -> None:
    """A private room's name is itself private: non-members and anonymous readers don't see
    it listed at all."""
    public_link = f"a[href='/rooms/{room.slug}/']"
    private_link = f"a[href='/rooms/{private_room.slug}/']"
    for person, sees_private in [(alice, True), (bob, False), (None, False)]:
        page = await open_page(person)
        await page.goto("/rooms/")
        await expect(page.locator(public_link)).to_have_count(1)
        await expect(page.locator(private_link)).to_have_count(1 if sees_private else 0)
        if sees_private:  # and a member is told which rooms are private
            row = page.locator(".room-list li", has=page.locator(private_link))
            await expect(row.locator(".badge")).to_have_text("private")


@browser_test
async def test_logged_in_user_creates_a_private_room_and_is_its_member(
    open_page: OpenPage, alice: AbstractUser
) -> None:
    slug = unique("made-here")
    page = await open_page(alice)
    await page.goto("/rooms/")
    await page.get_by_role("link", name="New room").click()
    await page.wait_for_url("**/rooms/new/")
    await page.get_by_label("Address").fill(slug)
    await page.get_by_label("Title").fill("Made in the browser")
    await page.get_by_label("Private room").check()
    await page.get_by_role("button", name="Create").click()
    await page.wait_for_url(f"**/rooms/{slug}/")
    await expect(page.locator("h1")).to_have_text("Made in the browser private")
    await expect(page.locator(".flash")).to_have_text("Room Made in the browser created.")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    room = await Room.objects.aget(slug=slug)
    assert room.is_private
    assert [u.pk async for u in room.members.all()] == [alice.pk]


@browser_test
async def test_room_new_sends_anonymous_users_to_log_in(open_page: OpenPage) -> None:
    page = await open_page()
    await page.goto("/rooms/new/")
    await page.wait_for_url("**/accounts/login/?next=/rooms/new/")


async def older_history(room: Room, db_url: str) -> list[str]:
    """A room with 12 messages more than its page shows; their texts, oldest first."""
    total = HISTORY_PAGE + 12
    await psql(
        db_url,
        "INSERT INTO chat_chatmessage (room_id, author, text) SELECT "
        f"'{room.slug}', 'ops', 'old ' || lpad(n::text, 3, '0') FROM generate_series(1, {total}) n",
    )
    return [f"old {n:03}" for n in range(1, total + 1)]


@browser_test
async def test_scrolling_up_pages_back_through_history(
    open_page: OpenPage, room: Room, db_url: str
) -> None:
    """The page renders the latest 50; a reader scrolling up to the top gets the older ones
    from ``?before=<id>``, in order, without losing their place, and the button that leads
    there goes away at the start.

    (Not a click on the button: reaching it scrolls the list to the top, which loads the
    older messages by itself and then hides the button; a click raced that and lost.)"""
    expected = await older_history(room, db_url)
    page = await open_page()
    await enter_room(page, room)
    await expect(texts(page)).to_have_text(expected[-HISTORY_PAGE:])
    older = page.get_by_role("button", name="Load older messages")
    await expect(older).to_be_visible()
    reading = message(page, expected[-HISTORY_PAGE])  # the oldest one shown so far
    await older.scroll_into_view_if_needed()  # the reader scrolls to the top
    await expect(texts(page)).to_have_text(expected)
    await expect(older).to_be_hidden()
    await expect(reading).to_be_in_viewport()  # the view did not jump to the top


@browser_test
async def test_load_older_button_pages_back_when_the_list_does_not_scroll(
    open_page: OpenPage, room: Room, db_url: str
) -> None:
    """On a screen tall enough for the whole page, no scroll can load more: the button does."""
    expected = await older_history(room, db_url)
    page = await open_page(viewport={"width": 1280, "height": 8000})
    await enter_room(page, room)
    await expect(texts(page)).to_have_text(expected[-HISTORY_PAGE:])
    fits = "s => s.scrollHeight <= s.clientHeight"
    assert await page.locator("#scroller").evaluate(fits), "the list scrolls: make it taller"
    older = page.get_by_role("button", name="Load older messages")
    await older.click()
    await expect(texts(page)).to_have_text(expected)
    await expect(older).to_be_hidden()


# -- the availability rule itself --------------------------------------------------------------


@pytest.mark.parametrize(
    ("exists", "ci", "verdict"),
    [
        (True, None, "run"),
        (True, "true", "run"),
        (False, None, "skip"),
        (False, "false", "skip"),
        (False, "true", "fail"),
    ],
)
def test_missing_chromium_skips_locally_and_fails_in_ci(
    tmp_path: Path, exists: bool, ci: str | None, verdict: str
) -> None:
    path = tmp_path / "chromium"
    if exists:
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    got, message = chromium_verdict(path, ci)
    assert got == verdict
    if verdict == "skip":
        assert message == SKIP_REASON
    if verdict == "fail":
        assert str(path) in message
        assert "apt-get install chromium" in message
