"""config.settings plus URLs that fail on purpose (tests/fault_urls.py), and a setting that
holds a URL with a password, for tests/test_error_pages.py: a real server error, and what
its debug page and its log show."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "tests.fault_urls"
# Shaped like the URL of a cache or mail server: no name marks it as secret, its value does.
CHAT_EXAMPLE_SERVICE_URL = "redis://pgchat:url-password-must-not-show@cache.invalid:6379/0"
