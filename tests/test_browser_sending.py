"""Sending from the browser when the network or the server says no (issue 11, points 5, 10).

Real Chromium against real servers, with tests/test_browser.py's fixtures: a send whose answer
is lost is retried under the same Idempotency-Key and shows once; a send over the rate limit
says how long to wait and keeps the draft.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

from django.contrib.auth.models import AbstractUser
from playwright.async_api import Route, expect

from chat.models import ChatMessage, Room

from .servers import OUTPUT_DIR, Server
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
    send,
)

__all__ = ["alice", "browser", "chromium", "open_page"]  # fixtures pytest finds by name


@browser_test
async def test_a_send_whose_answer_is_lost_is_retried_once_and_shows_once(
    open_page: OpenPage, room: Room, alice: AbstractUser
) -> None:
    """The server writes the message, but its answer never reaches the browser (the
    connection drops): composer.js retries with the same key, gets the same message back, and
    neither the page nor the table has it twice."""
    page = await open_page(alice)
    await enter_room(page, room)
    keys: list[str | None] = []

    async def lose_the_first_answer(route: Route) -> None:
        keys.append(route.request.headers.get("idempotency-key"))
        if len(keys) == 1:
            await route.fetch()  # the server receives it and commits the message...
            await route.abort("connectionreset")  # ...and the browser hears nothing back
        else:
            await route.continue_()

    await page.route(f"**/rooms/{room.slug}/messages", lose_the_first_answer)
    await send(page, "said once")  # returns when the box is cleared: the retry has landed

    assert len(keys) == 2, keys
    assert keys[0], keys
    assert keys[0] == keys[1], keys
    await expect(message(page, "said once")).to_have_count(1)
    await expect(page.locator("#send-error")).to_be_hidden()
    assert await ChatMessage.objects.filter(room=room).acount() == 1

    await send(page, "said next")  # the next message has a key of its own
    assert len(keys) == 3, keys
    assert keys[2] != keys[0], keys


@browser_test
async def test_sending_too_fast_says_when_to_try_again_and_keeps_the_draft(
    open_page: OpenPage,
    room: Room,
    alice: AbstractUser,
    make_server: Callable[..., Server],
) -> None:
    srv = await asyncio.to_thread(make_server, CHAT_RATELIMIT_MESSAGES="2/10000000")
    page = await open_page(alice, base_url=srv.url)
    await enter_room(page, room)
    await send(page, "one")
    await send(page, "two")

    box = page.locator("textarea[name=text]")
    await box.fill("three, too soon")
    await box.press("Enter")

    alert = page.locator("#send-error")
    await expect(alert).to_have_text(
        re.compile(r"^You are sending too fast; try again in \d+ (s|min|h)\.$")
    )
    await expect(alert).to_have_attribute("role", "alert")
    await expect(box).to_have_value("three, too soon")  # the draft is kept
    await expect(page.locator("#send button")).to_be_disabled()
    await expect(messages(page)).to_have_count(2)
    await page.screenshot(path=OUTPUT_DIR / "send-rate-limited.png")
    assert await ChatMessage.objects.filter(room=room).acount() == 2
