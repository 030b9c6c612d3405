"""The application leans on no private internal of Django, asgiref or hypercorn, so an
upgrade cannot break it silently. A scan of every module under chat/ and config/:

- no import of a private module or name (``from django.x import _y``, ``django._x``);
- no private attribute (``._name``) read off anything imported from those packages;
- none of the shortcuts this project once took, by name: StreamingHttpResponse's
  ``_iterator``, asgiref's ``thread_sensitive_context`` / ``context_to_thread_executor``,
  disconnecting Django's ``request_started`` receivers, overriding MiddlewareMixin's
  ``__acall__``, or stashing things in the ASGI scope
  (e.g. the server's ``send``) for a view to write past Django.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from .servers import PROJECT_DIR

FRAMEWORKS = ("django", "asgiref", "hypercorn")
SHORTCUTS = {
    r"\._iterator\b": "StreamingHttpResponse's private iterator",
    r"\bthread_sensitive_context\b": "asgiref's private per-request context variable",
    r"\bcontext_to_thread_executor\b": "asgiref's private map of request threads",
    r"\brequest_started\s*\.\s*disconnect\b": "Django's request_started receivers, unplugged",
    r"\bscope\s*\[[^\]]+\]\s*=(?!=)": "a value stashed in the ASGI scope",
    r"\b__acall__\b": "MiddlewareMixin's undocumented async entry point",
}
MODULES = sorted(
    path
    for folder in ("chat", "config")
    for path in (PROJECT_DIR / folder).rglob("*.py")
    if "migrations" not in path.parts
)


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def findings(source: str) -> list[str]:
    """What in ``source`` is a private internal of the frameworks, one line per finding."""
    found = [
        f"line {source.count(chr(10), 0, match.start()) + 1}: {why}"
        for pattern, why in SHORTCUTS.items()
        for match in re.finditer(pattern, source)
    ]
    imported: set[str] = set()  # local names bound to something from the frameworks
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FRAMEWORKS:
                    imported.add((alias.asname or alias.name).split(".")[0])
                    if any(private(part) for part in alias.name.split(".")):
                        found.append(f"line {node.lineno}: private module {alias.name}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in FRAMEWORKS:
            module = node.module or ""
            if any(private(part) for part in module.split(".")):
                found.append(f"line {node.lineno}: private module {module}")
            for alias in node.names:
                imported.add(alias.asname or alias.name)
                if private(alias.name):
                    found.append(f"line {node.lineno}: private name {module}.{alias.name}")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and private(node.attr):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in imported:
                found.append(f"line {node.lineno}: private attribute {root.id}...{node.attr}")
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PROJECT_DIR)))
def test_module_uses_only_public_apis(path: Path) -> None:
    assert findings(path.read_text()) == []


@pytest.mark.parametrize(
    "snippet",
    [
        "from django.utils._os import safe_join",
        "import django.core._x",
        "from asgiref.sync import _restore_context",
        "from asgiref.sync import SyncToAsync\nSyncToAsync.thread_sensitive_context.get()",
        "from asgiref import sync\nsync.SyncToAsync.context_to_thread_executor.pop(1)",
        "from django.db import connection\nconnection._nodb_cursor()",
        "async def body(response):\n    return response._iterator",
        "from django.core import signals\nsignals.request_started.disconnect(f)",
        "def app(scope, send):\n    scope['pgchat.send'] = send",
        "class M(MiddlewareMixin):\n    async def __acall__(self, request): ...",
    ],
)
def test_the_scan_finds_each_kind_of_private_use(snippet: str) -> None:
    """The guard above can fail: each of these is caught."""
    assert findings(snippet)


def test_the_scan_leaves_our_own_private_names_alone() -> None:
    assert findings("class A:\n    def f(self):\n        return self._rooms, A._x") == []
