"""config.settings plus Django's GZipMiddleware, for tests/test_stream_endpoint.py: a
deployment may add a body-rewriting middleware, and no event stream may break when it does."""

from config.settings import *  # noqa: F403
from config.settings import MIDDLEWARE

MIDDLEWARE = ["django.middleware.gzip.GZipMiddleware", *MIDDLEWARE]
