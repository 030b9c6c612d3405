"""Django settings for pgchat, read from the environment (see README, "Environment").

With no ``DATABASE_URL`` the project's embedded PostgreSQL (devtools/embedded_pg.py) is used.
Importing these settings starts nothing: ``make db`` (and so ``make run`` and ``make test``)
and ``manage.py`` start that server; here we only read where it listens.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from psycopg.conninfo import conninfo_to_dict

from devtools import embedded_pg

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


def _database_from_url(url: str) -> dict[str, Any]:
    """Django's DATABASES entry from a libpq URL or ``key=value`` string, via psycopg's parser."""
    try:
        params: dict[str, Any] = conninfo_to_dict(url)
    except Exception as exc:  # psycopg.ProgrammingError, named loosely to avoid the import
        raise ImproperlyConfigured(f"DATABASE_URL is not a valid PostgreSQL URL: {exc}") from exc
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": params.pop("dbname", "postgres"),
        "USER": params.pop("user", ""),
        "PASSWORD": params.pop("password", ""),
        "HOST": params.pop("host", ""),
        "PORT": params.pop("port", ""),
        # Anything else (sslmode, options, ...) goes to psycopg as is; the name tells
        # operators which sessions in pg_stat_activity are the web's.
        "OPTIONS": {
            "application_name": "pgchat-web",
            # A bounded pool per process: a burst of requests (a reconnect storm after a
            # restart) waits for a connection instead of exceeding max_connections.
            "pool": {
                "min_size": 1,
                "max_size": int(os.environ.get("CHAT_DB_POOL_SIZE", "8")),
                "timeout": 10,  # seconds a request waits for a connection, then 503
            },
            **params,
            # A writer of a room waits for that room's lock (chat_record_change); a psql
            # session left open inside a transaction must not hold web requests (and the
            # pool's connections) forever: after 5 s the request answers 503.
            "options": f"-c lock_timeout=5s {params.get('options', '')}".strip(),
        },
        "CONN_MAX_AGE": 0,  # required with "pool": connections go back to it at once
        "CONN_HEALTH_CHECKS": True,  # the pool checks a connection before lending it out,
        # so the first requests after a database restart don't fail on dead connections
    }


DEBUG = _env_bool("DEBUG", True)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "django-insecure-pgchat-development-key-do-not-use-in-production"
ALLOWED_HOSTS = [
    h.strip() for h in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",")
]


def _embedded_database_url() -> str:
    try:
        return embedded_pg.EmbeddedPostgres.from_environment().url()
    except embedded_pg.EmbeddedPgError as exc:
        raise ImproperlyConfigured(
            f"DATABASE_URL is not set and {exc}: run `make db` (or `make run`), "
            "or set DATABASE_URL to a PostgreSQL server"
        ) from exc


DATABASE_URL = os.environ.get("DATABASE_URL") or _embedded_database_url()
DATABASES = {"default": _database_from_url(DATABASE_URL)}
# LISTEN needs a session: behind a transaction-pooling PgBouncer, point this at session mode.
CHAT_LISTEN_DATABASE_URL = os.environ.get("CHAT_LISTEN_DATABASE_URL") or DATABASE_URL

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "pgtrigger",
    "chat",
]

# Django's stock list. The event streams don't pass through it: config/asgi.py serves them
# beside Django (chat/stream.py), so nothing here can buffer or rewrite a stream's body.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "chat.middleware.ContentSecurityPolicyMiddleware",
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
STATIC_ROOT = BASE_DIR / ".pgchat" / "static"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The event stream (chat/stream.py, chat/listener.py).
CHAT_SSE_HEARTBEAT = float(os.environ.get("CHAT_SSE_HEARTBEAT", "15"))  # seconds
CHAT_SUBSCRIBER_QUEUE_SIZE = int(os.environ.get("CHAT_SUBSCRIBER_QUEUE_SIZE", "256"))  # frames
CHAT_LISTENER_BACKOFF = float(os.environ.get("CHAT_LISTENER_BACKOFF", "0.5"))  # first retry, s

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "pgchat": {"handlers": ["console"], "level": os.environ.get("CHAT_LOG_LEVEL", "INFO")},
    },
}
