"""Issue 11, point 3: creating a room is an INSERT. Two users creating the same address at
the same moment: one gets the room, the other the form's "already taken" error; never a 500,
never the loser's form saved over the winner's room (it was: a private room silently became
public under the other user's title, both told they had created it).

Real concurrency: 30 pairs of logged-in users, each pair released together by a barrier in
two threads, against a real hypercorn with two workers.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
from django.contrib.auth.models import User

from chat.forms import SLUG_TAKEN
from chat.models import Room

from .helpers import DEADLINE, session_cookies, unique
from .servers import Server

PAIRS = 30


def create_room(base_url: str, cookies: dict[str, str], slug: str, title: str, private: bool,
                barrier: threading.Barrier) -> httpx.Response:  # fmt: skip
    with httpx.Client(base_url=base_url, timeout=DEADLINE, cookies=cookies) as client:
        form = {"slug": slug, "title": title, "csrfmiddlewaretoken": cookies["csrftoken"]}
        if private:
            form["is_private"] = "on"
        barrier.wait(DEADLINE)
        return client.post("/rooms/new/", data=form)


def test_racing_creates_of_one_address(
    make_server: Callable[..., Server], make_user: Callable[..., User]
) -> None:
    server = make_server(workers=2)
    users = [(make_user("racer-a"), make_user("racer-b")) for _ in range(PAIRS)]
    cookies = {
        user.username: asyncio.run(session_cookies(server.url, user.username))
        for pair in users
        for user in pair
    }
    slugs = [unique("race") for _ in range(PAIRS)]
    with ThreadPoolExecutor(max_workers=2 * PAIRS) as pool:
        futures = []
        for slug, (a, b) in zip(slugs, users, strict=True):
            barrier = threading.Barrier(2)
            for user, private in ((a, True), (b, False)):
                futures.append(
                    pool.submit(
                        create_room, server.url, cookies[user.username], slug,
                        f"{user.username}'s", private, barrier,
                    )
                )  # fmt: skip
        responses = [future.result() for future in futures]

    for index, slug in enumerate(slugs):
        a, b = users[index]
        pair = responses[2 * index : 2 * index + 2]
        statuses = sorted(response.status_code for response in pair)
        assert statuses == [200, 302], (slug, statuses, [r.text[:300] for r in pair])
        loser = next(response for response in pair if response.status_code == 200)
        assert SLUG_TAKEN in loser.text
        winner, private = (a, True) if pair[0].status_code == 302 else (b, False)
        room = Room.objects.get(slug=slug)
        # The winner's room exactly as the winner sent it: owner, title, privacy, members.
        assert (room.owner_id, room.title, room.is_private) == (
            winner.pk,
            f"{winner.username}'s",
            private,
        )
        assert list(room.members.values_list("pk", flat=True)) == [winner.pk]
