"""Who owns the cluster's files: we do, or, when we are root, an unprivileged service user.

PostgreSQL refuses to run as root. When the effective uid is 0 (CI, containers), the server
runs as the system user ``pgchat``, created if missing, through ``runuser``. Only the
cluster's folders are handed to that user; nothing outside the project is loosened, except
search permission on the project folder itself when it lacks it (a ``mktemp -d`` clone is
mode 0700).
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path

from .tools import EmbeddedPgError

SERVICE_USER = "pgchat"  # owns the cluster when we are root


def is_root() -> bool:
    return os.geteuid() == 0


def as_owner(argv: list[str]) -> list[str]:
    """``argv`` run as the cluster's owner: ourselves, or the service user if we are root."""
    return ["runuser", "-u", SERVICE_USER, "--", *argv] if is_root() else argv


def hand_over(folders: Sequence[Path]) -> None:
    """Give the service user these folders and everything in them (we are root)."""
    uid, gid = _ensure_service_user()
    for path in folders:
        if path.stat().st_uid != uid:
            shutil.chown(path, uid, gid)
            for child in path.rglob("*"):
                os.chown(child, uid, gid, follow_symlinks=False)


def check_service_user_reaches(program: Path, folder: Path, project_dir: Path) -> None:
    """The service user needs to run ``program`` and write in ``folder``.

    A fresh ``mktemp -d`` clone is mode 0700. The project folder is ours, so we add search
    (x, not read) permission for others to it; a parent outside the project is never
    changed: we say what to do instead.
    """
    if _service_user_can_reach(program, folder):
        return
    if project_dir in folder.parents:
        os.chmod(project_dir, project_dir.stat().st_mode | 0o001)
        if _service_user_can_reach(program, folder):
            return
    raise EmbeddedPgError(
        f"PostgreSQL refuses to run as root, so it runs as user {SERVICE_USER!r}, which "
        f"cannot reach {[program, folder]}: a folder above the project is closed to other "
        "users. Move the project to a folder others can traverse, or set DATABASE_URL."
    )


def check_private_dir(path: Path) -> None:
    """Refuse a socket folder outside the project that someone else could control: a
    symlink, another user's folder, or one others can enter (the socket trusts its users)."""
    info = path.lstat()
    owners = {os.geteuid()}
    if is_root():
        with contextlib.suppress(KeyError):
            owners.add(pwd.getpwnam(SERVICE_USER).pw_uid)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise EmbeddedPgError(f"{path} is not a plain folder; remove it and try again")
    if info.st_uid not in owners or info.st_mode & 0o077:
        raise EmbeddedPgError(
            f"{path} belongs to someone else or is open to others; remove it and try again"
        )


def _service_user_can_reach(program: Path, folder: Path) -> bool:
    test = ["test", "-x", str(program), "-a", "-w", str(folder)]
    return subprocess.run(["runuser", "-u", SERVICE_USER, "--", *test]).returncode == 0


def _ensure_service_user() -> tuple[int, int]:
    """Create the unprivileged system user that runs the server when we are root."""
    try:
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd", "--system", "--user-group", "--no-create-home",
                "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
                "--comment", "pgchat embedded PostgreSQL", SERVICE_USER,
            ],
            check=True,
        )  # fmt: skip
        entry = pwd.getpwnam(SERVICE_USER)
    return entry.pw_uid, grp.getgrnam(SERVICE_USER).gr_gid
