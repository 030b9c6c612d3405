"""docs/deploy.md's examples are files people copy: each parses, and they agree with each
other and with the settings the app reads."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

from .servers import PROJECT_DIR

DEPLOY = PROJECT_DIR / "docs" / "deploy"


def _ini(path: Path) -> configparser.ConfigParser:
    # strict: a key twice in a section is an error (systemd would take the last one).
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment, method-assign]  # keys keep their case
    assert parser.read(path) == [str(path)]
    return parser


def _env_file() -> dict[str, str]:
    values = {}
    for line in (DEPLOY / "pgchat.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def test_the_systemd_units_parse_and_run_the_app() -> None:
    unit = _ini(DEPLOY / "pgchat.service")
    assert {"Unit", "Service", "Install"} <= set(unit.sections())
    service = unit["Service"]
    assert "hypercorn config.asgi:application" in service["ExecStart"]
    assert "--workers" in service["ExecStart"]
    assert service["EnvironmentFile"] == "/etc/pgchat/pgchat.env"
    assert "PROMETHEUS_MULTIPROC_DIR=/run/pgchat" in service["Environment"]
    assert service["RuntimeDirectory"] == "pgchat"  # created empty at each start
    migrate = _ini(DEPLOY / "pgchat-migrate.service")["Service"]
    assert migrate["Type"] == "oneshot"
    assert migrate["ExecStart"].endswith("manage.py migrate --no-input")
    assert migrate["EnvironmentFile"] == service["EnvironmentFile"]


def test_the_example_settings_load() -> None:
    """The env file, as systemd would give it, passes config/settings.py's own checks."""
    env = {**os.environ, **_env_file(), "DJANGO_SETTINGS_MODULE": "config.settings"}
    result = subprocess.run(
        [sys.executable, "-c", "import config.settings as s; print(s.CHAT_PGBOUNCER)"],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "transaction"


def test_pgbouncer_example_pools_the_app_and_sessions_the_listener() -> None:
    ini = _ini(DEPLOY / "pgbouncer.ini")
    env = _env_file()
    queries = conninfo_to_dict(env["DATABASE_URL"])
    listener = conninfo_to_dict(env["CHAT_LISTEN_DATABASE_URL"])
    port = ini["pgbouncer"]["listen_port"]
    assert str(queries["port"]) == str(listener["port"]) == port
    databases = ini["databases"]
    assert "pool_mode=transaction" in databases[str(queries["dbname"])]
    assert "pool_mode=session" in databases[str(listener["dbname"])]


def test_nginx_example_has_the_stream_settings() -> None:
    conf = (DEPLOY / "nginx.conf").read_text()
    for setting in ("http2 on;", "proxy_buffering off;", "proxy_read_timeout 1h;", "gzip off;"):
        assert setting in conf


def test_the_readme_links_the_deployment_guide() -> None:
    assert "](docs/deploy.md)" in (PROJECT_DIR / "README.md").read_text()
