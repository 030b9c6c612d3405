"""Issue 11, points 1 and 11: the SECRET_KEY story and the production profile.

``CHAT_PRODUCTION=true`` is the environment for running behind a TLS-terminating proxy
(README, "Running in production"): with it, ``manage.py check --deploy`` has nothing to say,
and a real server sends HSTS, marks its cookies Secure, redirects plain http, and trusts the
proxy's X-Forwarded-Proto.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from django.core.management.utils import get_random_secret_key

from config.secret_key import stored_secret_key

from .helpers import DEADLINE, PASSWORD
from .servers import PROJECT_DIR, Server

HOST = "chat.example.org"


def production_env(db_url: str, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "CHAT_PRODUCTION")
    }
    return {
        **env,
        "DATABASE_URL": db_url,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "CHAT_PRODUCTION": "true",
        "SECRET_KEY": get_random_secret_key(),
        "ALLOWED_HOSTS": HOST,
        **extra,
    }


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE * 2,
        check=False,
    )


def test_check_deploy_has_no_warnings_in_the_production_profile(db_url: str) -> None:
    result = manage(production_env(db_url), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    # Without the profile the same check warns: the profile is what makes it pass.
    plain = production_env(db_url, CHAT_PRODUCTION="false")
    warned = manage(plain, "check", "--deploy", "--fail-level", "WARNING")
    assert warned.returncode != 0
    assert "security.W004" in warned.stderr + warned.stdout


def test_the_production_profile_requires_its_secret_key_and_hosts(db_url: str) -> None:
    for missing in ("SECRET_KEY", "ALLOWED_HOSTS"):
        env = production_env(db_url)
        del env[missing]
        result = manage(env, "check")
        assert result.returncode != 0
        assert f"CHAT_PRODUCTION=true needs {missing}" in result.stderr


def test_a_production_server_behind_a_tls_proxy(make_server: Callable[..., Server]) -> None:
    server = make_server(  # 127.0.0.1 as well: the proxy's health probe asks by address
        CHAT_PRODUCTION="true",
        SECRET_KEY=get_random_secret_key(),
        ALLOWED_HOSTS=f"{HOST},127.0.0.1",
        DEBUG="",
    )
    proxied = {"Host": HOST, "X-Forwarded-Proto": "https"}
    with httpx.Client(base_url=server.url, timeout=DEADLINE, headers=proxied) as client:
        page = client.get("/accounts/login/")
        assert page.status_code == 200
        assert "max-age=31536000" in page.headers["strict-transport-security"]
        assert "secure" in page.headers["set-cookie"].lower()  # the CSRF cookie
        token = page.cookies["csrftoken"]  # Secure: httpx keeps it from http:// URLs itself
        login = client.post(
            "/accounts/login/",
            data={"username": "nobody", "password": PASSWORD, "csrfmiddlewaretoken": token},
            headers={"Origin": f"https://{HOST}", "Cookie": f"csrftoken={token}"},
        )
        assert login.status_code == 200  # the form again (wrong password): CSRF passed
    # Plain http (the proxy said nothing): redirected to https, but the probes are not.
    plain = httpx.get(f"{server.url}/rooms/", headers={"Host": HOST}, timeout=DEADLINE)
    assert plain.status_code == 301
    assert plain.headers["location"] == f"https://{HOST}/rooms/"
    health = httpx.get(f"{server.url}/healthz", headers={"Host": HOST}, timeout=DEADLINE)
    assert health.status_code == 200


def test_a_generated_secret_key_is_made_once_and_kept_private(tmp_path: Path) -> None:
    """Without SECRET_KEY (development), every worker starting at once gets the same key,
    and it stays across restarts; no key is written in the source."""
    path = tmp_path / "state" / "secret_key"
    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: stored_secret_key(path), range(8)))
    assert len(keys) == 1
    (key,) = keys
    assert len(key) >= 50
    assert stored_secret_key(path) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    settings_source = (PROJECT_DIR / "config" / "settings.py").read_text()
    assert "django-insecure" not in settings_source
