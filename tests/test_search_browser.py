"""Search in a real headless Chromium: the box in the room header (and its "/" shortcut),
results grouped by room with the matched words marked and markup shown as text, and a
result that opens its room at that message, with the messages around it and the stream live
from there (a psql insert arrives)."""

from __future__ import annotations

import re
import uuid

import pytest
from django.contrib.auth.models import AbstractUser
from playwright.async_api import expect

from chat.models import ChatMessage, Room

from .helpers import unique
from .servers import Server, insert_sql, psql
from .test_browser import (  # fixtures and helpers, not tests
    OpenPage,
    alice,
    browser,
    browser_test,
    chromium,
    enter_room,
    message,
    messages,
    open_page,
)

__all__ = ["alice", "browser", "chromium", "open_page"]  # fixtures pytest finds by name

OLDER, NEWER = 10, 60  # messages before and after the one found: more than a page's 50


@pytest.fixture
def word() -> str:
    return "w" + uuid.uuid4().hex[:12]


@pytest.fixture
def rooms_with_the_word(word: str, alice: AbstractUser) -> tuple[Room, Room, Room, int]:
    """A room where the word is deep in the history, another room with it, and a private
    room (alice is no member) with it; returns those and the deep message's id."""
    deep, other = (Room.objects.create(slug=unique(name)) for name in ("deep", "other"))
    secret = Room.objects.create(slug=unique("secret"), is_private=True)
    for i in range(OLDER):
        ChatMessage.objects.create(room=deep, author="ops", text=f"before {i}")
    found = ChatMessage.objects.create(
        room=deep, author="ops", text=f'the {word} is here <img src=x onerror="window.pwned=1">'
    )
    for i in range(NEWER):
        ChatMessage.objects.create(room=deep, author="ops", text=f"after {i}")
    ChatMessage.objects.create(room=other, author="ann", text=f"another {word}")
    ChatMessage.objects.create(room=secret, author="spy", text=f"secret {word}")
    return deep, other, secret, found.pk


@browser_test
async def test_search_then_open_a_result_in_context_and_stay_live(
    open_page: OpenPage,
    server: Server,
    db_url: str,
    alice: AbstractUser,
    word: str,
    rooms_with_the_word: tuple[Room, Room, Room, int],
) -> None:
    deep, other, _secret, found_id = rooms_with_the_word
    page = await open_page(alice)
    await enter_room(page, other)
    await page.locator("#scroller").focus()
    await page.keyboard.press("/")  # the shortcut
    box = page.locator("#search-q")
    await expect(box).to_be_focused()
    await page.keyboard.type(word)
    await page.keyboard.press("Enter")

    panel = page.locator("#search-results")
    groups = panel.locator(".search-room")
    await expect(groups).to_have_count(2)  # the private room's message is not there
    await expect(groups.locator("h2")).to_have_text([f"#{other.slug}", f"#{deep.slug}"])
    await expect(panel.locator("mark")).to_have_text([word, word])
    await expect(panel).not_to_contain_text("secret")
    assert await panel.locator("img").count() == 0  # markup stayed text
    assert await page.evaluate("window.pwned") is None

    await groups.nth(1).locator("a").click()  # the deep room's result
    await page.wait_for_url(re.compile(rf"/rooms/{deep.slug}/\?around={found_id}$"))
    await expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    target = page.locator(f'#messages > li.message.found[data-id="{found_id}"]')
    await expect(target).to_be_in_viewport()
    await expect(target.locator(".text")).to_contain_text(f"the {word} is here")
    await expect(message(page, "before 0")).to_have_count(1)  # its neighbours, both sides
    await expect(message(page, "after 0")).to_have_count(1)
    await expect(message(page, f"after {NEWER - 1}")).to_have_count(0)  # beyond the page
    await expect(page.locator(".search-latest")).to_be_visible()
    assert await page.evaluate("window.pwned") is None

    await psql(db_url, insert_sql(deep.slug, "live after the jump"))  # the stream runs
    await expect(message(page, "live after the jump")).to_have_count(1)
    await expect(messages(page).last).to_contain_text("live after the jump")

    await page.keyboard.press("/")
    await page.keyboard.type("!!!")
    await page.keyboard.press("Enter")  # a refused query: the server's reason, shown
    await expect(panel.locator(".error")).to_contain_text("no words to search for")


@browser_test
async def test_the_shortcut_leaves_typing_alone(
    open_page: OpenPage, room: Room, alice: AbstractUser
) -> None:
    page = await open_page(alice)
    await enter_room(page, room)
    composer = page.locator("textarea[name=text]")
    await composer.focus()
    await page.keyboard.type("a/b")
    await expect(composer).to_have_value("a/b")
    await expect(page.locator("#search-q")).not_to_be_focused()
    await page.locator("#search-q").fill("x")
    await page.locator("#search-q").press("Escape")
    await expect(page.locator("#search-results")).to_be_hidden()


@browser_test
async def test_the_sidebar_box_searches_too(
    open_page: OpenPage,
    alice: AbstractUser,
    word: str,
    rooms_with_the_word: tuple[Room, Room, Room, int],
) -> None:
    _deep, other, _secret, found_id = rooms_with_the_word
    page = await open_page(alice)
    await enter_room(page, other)
    side = page.locator("#sidebar #sidebar-search-q")
    await expect(side).to_be_visible()
    await side.fill(word)
    await side.press("Enter")
    panel = page.locator("#search-results")
    await expect(panel.locator(".search-room")).to_have_count(2)  # not the private room's
    await expect(panel.locator(f'a[data-id="{found_id}"]')).to_have_count(1)
    await expect(page.locator("#search-q")).to_have_value(word)  # one search, one panel
