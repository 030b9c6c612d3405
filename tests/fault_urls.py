"""config.urls plus a page and an API URL that raise, so a test can see a real 500."""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from config.urls import handler400, handler403, handler404, handler500, urlpatterns

__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]


class Boom(RuntimeError):
    """The failure the tests look for in the server's log."""


def fail(request: HttpRequest) -> HttpResponse:
    raise Boom("an error no client may see")


urlpatterns = [path("boom/", fail), path("me/boom", fail), *urlpatterns]
