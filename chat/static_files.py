"""Static files (the chat/*.js modules, chat.css, the admin's), served by WhiteNoise
as Django middleware.

Why WhiteNoise: Django's ASGIStaticFilesHandler let a path such as
``/static/%2e%2e/%2e%2e/config/settings.py`` reach the file finders, whose
SuspiciousFileOperation became a 500; WhiteNoise looks a URL up in the table of files it
indexed at start-up (or, with DEBUG, accepts only canonical paths below a static folder), so
anything else is simply not a static file and falls through to Django's 404. It also gives
ETag, Last-Modified, 304s and Range for free.

Why a subclass: WhiteNoiseMiddleware is sync-only, so under ASGI Django would hop to a thread
and back for *every* request to run it. This does the same look-up natively async; the files
are small and local, so reading one on the event loop costs less than that hop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import markcoroutinefunction
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from whitenoise.middleware import WhiteNoiseMiddleware

GetResponse = Callable[[HttpRequest], Awaitable[HttpResponseBase]]


class StaticFiles(WhiteNoiseMiddleware):  # type: ignore[misc]  # whitenoise has no types
    async_capable = True
    sync_capable = False

    def __init__(self, get_response: GetResponse, *args: Any, **kwargs: Any) -> None:
        super().__init__(get_response, *args, **kwargs)
        self.get_response: GetResponse = get_response
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        path = request.path_info
        found = self.find_file(path) if self.autorefresh else self.files.get(path)
        if found is None:
            return await self.get_response(request)
        # WhiteNoise decides status and headers (304, 206, 405 for a POST...); its file
        # object is read whole: a streamed response would cost a thread hop under ASGI.
        answer = found.get_response(request.method, request.META)
        body = b""
        if answer.file is not None:
            with answer.file:
                body = answer.file.read()
        response = HttpResponse(body, status=int(answer.status))
        del response["Content-Type"]  # WhiteNoise's headers name the real one
        for name, value in answer.headers:
            response[name] = value
        return response
