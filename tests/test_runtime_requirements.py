"""``make run`` installs requirements.txt only: everything the server imports must be there.

requirements-dev.txt (pytest, httpx, Playwright, mypy, ...) is installed for the tests, so a
stray ``import httpx`` in chat/ would pass every other test and break only a fresh
``make run``. This imports every module the server can load, as the server does, and
names the distributions they came from.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from .servers import PROJECT_DIR

# Imports every module of the server's packages (the Django app, its settings and wiring,
# the set-up tools `make run` uses) and hypercorn, then prints each loaded module's
# distribution. bench/ and tests/ are not the server's: they may use the tools.
LOAD_THE_SERVER = """
import importlib, json, pkgutil, sys
at_start = set(sys.modules)  # the interpreter's own (and site's .pth hooks): not ours
from importlib.metadata import packages_distributions

import django
django.setup()
import hypercorn.__main__, hypercorn.asyncio
import chat, config, devtools
for package in (chat, config, devtools):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(module.name)
owners = packages_distributions()
loaded = {name.partition(".")[0] for name in set(sys.modules) - at_start}
print(json.dumps(sorted({dist for name in loaded for dist in owners.get(name, ())})))
"""


def requirement_names(filename: str) -> set[str]:
    """Distribution names pinned in a requirements file, normalised (PEP 503)."""
    names = set()
    for line in (PROJECT_DIR / filename).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.add(normalise(re.split(r"[=<>!~\[; ]", line)[0]))
    return names


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_server_imports_only_runtime_requirements() -> None:
    env = {**os.environ, "DATABASE_URL": "dbname=pgchat-import-check"}  # read, not connected
    result = subprocess.run(
        [sys.executable, "-c", LOAD_THE_SERVER],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded = {normalise(name) for name in json.loads(result.stdout.splitlines()[-1])}
    runtime = requirement_names("requirements.txt")

    assert {"django", "hypercorn"} <= loaded  # the check saw the server
    assert loaded - runtime == set(), "imported by the server but not in requirements.txt"


def test_requirements_dev_adds_to_the_runtime_set() -> None:
    text = (PROJECT_DIR / "requirements-dev.txt").read_text()
    assert "-r requirements.txt" in text.splitlines()  # `make test` gets the runtime too
    assert requirement_names("requirements.txt") & requirement_names("requirements-dev.txt") == (
        set()
    )  # each pin in one place
