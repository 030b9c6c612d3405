"""Django settings for pgchat, read from the environment (see README, "Environment").

With no ``DATABASE_URL`` the project's embedded PostgreSQL (devtools/embedded_pg.py) is used.
Importing these settings starts nothing: ``make db`` (and so ``make run`` and ``make test``)
and ``manage.py`` start that server; here we only read where it listens.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from config.database import database_from_url, embedded_database_url, pgbouncer_mode
from config.secret_key import stored_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off", ""):
        return False
    raise ImproperlyConfigured(f"{name}={value!r}: use true or false")


# Off unless asked for: a debug page shows settings and source to whoever triggers it.
DEBUG = _env_bool("DEBUG", False)
# The production profile (README, "Running in production"): behind a TLS-terminating proxy.
CHAT_PRODUCTION = _env_bool("CHAT_PRODUCTION", False)
if CHAT_PRODUCTION and DEBUG:
    raise ImproperlyConfigured("CHAT_PRODUCTION=true and DEBUG=true: choose one")
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if CHAT_PRODUCTION:
        raise ImproperlyConfigured("CHAT_PRODUCTION=true needs SECRET_KEY (50+ random characters)")
    SECRET_KEY = stored_secret_key(BASE_DIR / ".pgchat" / "secret_key")  # generated once
if CHAT_PRODUCTION and not os.environ.get("ALLOWED_HOSTS", "").strip():
    raise ImproperlyConfigured("CHAT_PRODUCTION=true needs ALLOWED_HOSTS: the names clients use")
ALLOWED_HOSTS = [
    h.strip() for h in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",")
]
if CHAT_PRODUCTION:
    # The proxy terminates TLS and says so in X-Forwarded-Proto (it must overwrite what a
    # client sends): Django then knows the request was https, for redirects and CSRF.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]  # the proxy's own probes, over http
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("CHAT_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("CHAT_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = _env_bool("CHAT_HSTS_PRELOAD", True)
# Even with DEBUG=true the debug page masks the database URLs and any URL with a password.
DEFAULT_EXCEPTION_REPORTER_FILTER = "chat.error_reports.CredentialFilter"
DEFAULT_EXCEPTION_REPORTER = "chat.error_reports.Reporter"  # never fails on the request
# Password reset needs mail: without EMAIL_HOST it is not routed at all (config/urls.py).
EMAIL_HOST = os.environ.get("EMAIL_HOST", "").strip()


DATABASE_URL = os.environ.get("DATABASE_URL") or embedded_database_url()
CHAT_PGBOUNCER = pgbouncer_mode()
DATABASES = {
    "default": database_from_url(DATABASE_URL, transaction_pool=CHAT_PGBOUNCER == "transaction")
}
# LISTEN needs a session: behind a transaction-pooling PgBouncer, point this at PostgreSQL
# directly or at a session-mode pool (docs/deploy.md).
CHAT_LISTEN_DATABASE_URL = os.environ.get("CHAT_LISTEN_DATABASE_URL") or DATABASE_URL
if CHAT_PGBOUNCER == "transaction" and CHAT_LISTEN_DATABASE_URL == DATABASE_URL:
    # Through a transaction pool LISTEN lands on some server connection and the listener
    # would hear nothing, silently: refuse to start instead.
    raise ImproperlyConfigured(
        "CHAT_PGBOUNCER=transaction needs CHAT_LISTEN_DATABASE_URL: LISTEN needs a session "
        "(PostgreSQL directly, or a session-mode pool)"
    )

# A streaming replica for history, replay and search reads (chat/replica.py); writes,
# LISTEN and access checks stay on DATABASE_URL. A replay waits up to
# CHAT_READ_FENCE_SECONDS for the replica to reach the primary's position, then reads the
# primary.
CHAT_READ_DATABASE_URL = os.environ.get("CHAT_READ_DATABASE_URL", "")
CHAT_READ_FENCE_SECONDS = float(os.environ.get("CHAT_READ_FENCE_SECONDS", "0.5"))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "pgtrigger",
    "axes",  # log-in lockout (see "Limits" below)
    "chat",
]

# Django's stock list. The event streams don't pass through it: config/asgi.py serves them
# beside Django (chat/stream.py), so nothing here can buffer or rewrite a stream's body.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "chat.static_files.StaticFiles",  # WhiteNoise: right after security, as its docs say
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "chat.middleware.ContentSecurityPolicyMiddleware",
    # Last, as django-axes asks: turns a locked-out log-in into our 429 page. Async-capable,
    # so it adds no thread to a request (it hops to one only to render a lockout).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Tests create and log in many users; the default hasher is deliberately slow (~0.5 s).
if _env_bool("CHAT_FAST_PASSWORD_HASHER", False):
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
CSRF_FAILURE_VIEW = "chat.error_views.csrf_failure"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Served by WhiteNoise (chat/static_files.py) from the apps' static folders, indexed at
# start-up: no collectstatic step. With DEBUG it looks each file up again, so edits show.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The event stream (chat/stream.py, chat/listener.py).
CHAT_SSE_HEARTBEAT = float(os.environ.get("CHAT_SSE_HEARTBEAT", "15"))  # seconds
CHAT_SUBSCRIBER_QUEUE_SIZE = int(os.environ.get("CHAT_SUBSCRIBER_QUEUE_SIZE", "256"))  # frames
CHAT_LISTENER_BACKOFF = float(os.environ.get("CHAT_LISTENER_BACKOFF", "0.5"))  # first retry, s
# Under load, at most one batch of bells per this many seconds after a read of the log
# (chat/bell_batches.py); 0: no pacing.
CHAT_LISTENER_READ_INTERVAL = float(os.environ.get("CHAT_LISTENER_READ_INTERVAL", "0.01"))
# Every open stream's access is re-checked this often, besides at every access change.
CHAT_ACCESS_RECHECK_SECONDS = float(os.environ.get("CHAT_ACCESS_RECHECK_SECONDS", "3600"))
# Presence (issue 13): a worker's heartbeat keeps its users online this long; a worker that
# dies is swept (its users leave) within this plus a third of it. Tests shrink it.
CHAT_PRESENCE_EXPIRY_SECONDS = float(os.environ.get("CHAT_PRESENCE_EXPIRY_SECONDS", "30"))
# Typing: a user's typing in a room reaches other streams at most once per this interval.
CHAT_TYPING_THROTTLE_SECONDS = float(os.environ.get("CHAT_TYPING_THROTTLE_SECONDS", "2.5"))


# -- Search (README, "Search") --------------------------------------------------------------
# The text search configuration of the index: "simple" (every language, words as written),
# or "english", "german", ... (stemming and stop words). Taken by the migration that builds
# the index; after changing it, run `manage.py search_reindex` (README says what it costs).
CHAT_SEARCH_CONFIG = os.environ.get("CHAT_SEARCH_CONFIG", "simple").strip()
if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?", CHAT_SEARCH_CONFIG):
    raise ImproperlyConfigured(
        f"CHAT_SEARCH_CONFIG={CHAT_SEARCH_CONFIG!r}: name a text search configuration"
    )
# How many of the newest readable messages a search checks row by row before it asks the
# index (chat/search.py explains; tests set it tiny to exercise the index path).
CHAT_SEARCH_WINDOW = int(os.environ.get("CHAT_SEARCH_WINDOW", "5000"))
if CHAT_SEARCH_WINDOW < 1:
    raise ImproperlyConfigured("CHAT_SEARCH_WINDOW must be 1 or more")


# -- Limits every client meets (README, "Limits") -----------------------------------------
# Counted in PostgreSQL, so they hold across workers and hosts. A rate is "COUNT/SECONDS".


def _env_rate(name: str, default: str) -> tuple[int, int]:
    value = os.environ.get(name, default)
    count, _, seconds = value.partition("/")
    if not (count.isdigit() and seconds.isdigit() and int(count) > 0 and int(seconds) > 0):
        raise ImproperlyConfigured(f"{name}={value!r}: write COUNT/SECONDS, e.g. {default}")
    return int(count), int(seconds)


# Where the client's address comes from. Unset: the socket's peer (REMOTE_ADDR), and any
# X-Forwarded-For a client sends is ignored. Behind proxies, name the header they set and
# how many of them append to it (the client is that many entries from the right).
CHAT_CLIENT_ADDRESS_HEADER = os.environ.get("CHAT_CLIENT_ADDRESS_HEADER", "").strip()
CHAT_TRUSTED_PROXY_COUNT = int(os.environ.get("CHAT_TRUSTED_PROXY_COUNT", "1"))
if CHAT_TRUSTED_PROXY_COUNT < 1:
    raise ImproperlyConfigured("CHAT_TRUSTED_PROXY_COUNT must be 1 or more")

CHAT_RATELIMIT_MESSAGES = _env_rate("CHAT_RATELIMIT_MESSAGES", "20/10")  # per user
CHAT_RATELIMIT_ROOMS = _env_rate("CHAT_RATELIMIT_ROOMS", "10/3600")  # per user
CHAT_RATELIMIT_SIGNUPS = _env_rate("CHAT_RATELIMIT_SIGNUPS", "10/3600")  # per address
# Every write through the JSON API, per user (chat/jsonapi.py dispatch): a ceiling no person
# reaches, that a script repeating reactions, joins or read positions does.
CHAT_RATELIMIT_WRITES = _env_rate("CHAT_RATELIMIT_WRITES", "300/60")
CHAT_RATELIMIT_TYPING = _env_rate("CHAT_RATELIMIT_TYPING", "20/10")  # per user, all rooms
# GET /search: per user, or per address when logged out (a search costs the database CPU).
CHAT_RATELIMIT_SEARCHES = _env_rate("CHAT_RATELIMIT_SEARCHES", "30/10")
# An Idempotency-Key's first answer is kept this long (POST /rooms/<slug>/messages).
CHAT_IDEMPOTENCY_SECONDS = int(os.environ.get("CHAT_IDEMPOTENCY_SECONDS", "86400"))

# Log-in lockout by django-axes, in its database tables: after COUNT failed log-ins for one
# username (from any address) or from one address (for any usernames), that username or
# address is refused for SECONDS after the failure that reached the limit, before any
# password is hashed. Attempts while locked out do not extend it.
_login_failures, _login_cooloff = _env_rate("CHAT_LOGIN_FAILURE_LIMIT", "10/900")
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out log-in outright
    "django.contrib.auth.backends.ModelBackend",  # then checks the password
]
AXES_FAILURE_LIMIT = _login_failures
AXES_COOLOFF_TIME = timedelta(seconds=_login_cooloff)
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]  # each counted on its own
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False  # so Retry-After tells the truth
AXES_CLIENT_IP_CALLABLE = "chat.client_address.limited_address"  # the same address as ours
AXES_LOCKOUT_CALLABLE = "chat.login_lockout.lockout_response"  # 429 page, Retry-After
AXES_DISABLE_ACCESS_LOG = True  # no log of successful log-ins: not needed, personal data
AXES_VERBOSE = False

# -- Request bodies (chat/body_limit.py, README "Limits") ---------------------------------
# A body over this many bytes answers 413 before it is read; one that has not fully
# arrived after CHAT_BODY_TIMEOUT_SECONDS answers 408.
CHAT_MAX_BODY_BYTES = int(os.environ.get("CHAT_MAX_BODY_BYTES", str(1024 * 1024)))
CHAT_BODY_TIMEOUT_SECONDS = float(os.environ.get("CHAT_BODY_TIMEOUT_SECONDS", "20"))
# Django's own limit, equal: the guard has refused anything larger before Django reads it.
DATA_UPLOAD_MAX_MEMORY_SIZE = CHAT_MAX_BODY_BYTES

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "pgchat": {"handlers": ["console"], "level": os.environ.get("CHAT_LOG_LEVEL", "INFO")},
        # The pools' own warnings carry the cause a pool timeout hides: "error connecting in
        # 'pgchat-web': ... FATAL: ..." (refused, wrong password, server down).
        "psycopg": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        # Failed log-ins and lockouts (username and address masked), in the same format.
        "axes": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        # Every server error with its traceback (Django logs a 500 here with exc_info),
        # and refused Host headers: with DEBUG off Django itself would only mail admins.
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
        "django.security": {"handlers": ["console"], "level": "ERROR", "propagate": False},
    },
}
