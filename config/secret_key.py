"""The SECRET_KEY when none is given: generated once, kept in the git-ignored state folder.

Why not a key written in the source: every clone would sign sessions and CSRF tokens with
the same public key, so anyone could forge a session for a server started without one.
Why kept in a file: sessions survive a restart, and every worker process of one server
reads the same key. A production profile (CHAT_PRODUCTION=true) never comes here: it must
be given SECRET_KEY (config/settings.py).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from django.core.management.utils import get_random_secret_key


def stored_secret_key(path: Path) -> str:
    """The key in ``path``, created there (mode 0600) by whichever process asks first.

    Several workers start at once: the key is written to a temporary file and linked into
    place, which fails for all but one; everyone then reads the one that won.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".secret-")  # mode 0600
        try:
            with os.fdopen(fd, "w") as file:
                file.write(get_random_secret_key())
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process was first: use its key
        finally:
            os.unlink(temporary)
    key = path.read_text().strip()
    if len(key) < 50:
        raise OSError(f"{path} holds no usable key: delete it and a new one is made")
    return key
