"""Helpers for the workspace tests: logged-in clients and their calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from django.contrib.auth.models import AbstractUser

from .helpers import PASSWORD
from .servers import Browserless, Server


@asynccontextmanager
async def logged_in(server: Server, user: AbstractUser) -> AsyncIterator[Browserless]:
    async with Browserless(server.url) as client:
        await client.login(user.username, PASSWORD)
        yield client


async def post_json(client: Browserless, url: str, body: dict[str, Any]) -> httpx.Response:
    return await client.request("POST", url, json=body)


async def my_rooms(client: Browserless) -> dict[str, dict[str, Any]]:
    """The client's /me/rooms, by slug."""
    response = await client.client.get("/me/rooms")
    assert response.status_code == 200, response.text
    return {room["slug"]: room for room in response.json()["rooms"]}


async def my_room(client: Browserless, slug: str) -> dict[str, Any]:
    rooms = await my_rooms(client)
    assert slug in rooms, f"{slug} not in {sorted(rooms)}"
    return rooms[slug]


async def post_message(client: Browserless, slug: str, text: str) -> dict[str, Any]:
    response = await client.request("POST", f"/rooms/{slug}/messages", json={"text": text})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]
