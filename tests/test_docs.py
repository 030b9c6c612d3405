"""The documents a clone ships link to files the clone has (issue 10: the README's link to the
design document pointed outside the repository)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .servers import PROJECT_DIR

DOCUMENTS = ["README.md", *sorted(p.name for p in (PROJECT_DIR / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")  # [text](target)


def document_path(name: str) -> Path:
    return PROJECT_DIR / name if name == "README.md" else PROJECT_DIR / "docs" / name


@pytest.mark.parametrize("name", DOCUMENTS)
def test_relative_links_resolve_inside_the_repository(name: str) -> None:
    document = document_path(name)
    targets = [t.split("#")[0] for t in LINK.findall(document.read_text())]
    local = [t for t in targets if t and not re.match(r"[a-z]+:", t)]  # not http:, mailto:
    for target in local:
        resolved = (document.parent / target).resolve()
        assert resolved.is_relative_to(PROJECT_DIR), f"{name}: {target} leaves the repository"
        assert resolved.exists(), f"{name}: {target} does not exist"


def test_the_readme_links_the_contract() -> None:
    assert "](docs/contract.md)" in (PROJECT_DIR / "README.md").read_text()
