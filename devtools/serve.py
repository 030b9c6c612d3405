"""``make run``'s launcher: check the address, take the port, then become hypercorn.

Two set-up mistakes used to end in output nobody should have to read; here each is one line:

- **A busy port.** hypercorn printed an ``OSError`` traceback. Worse, with several workers it
  binds with ``SO_REUSEPORT``, so a second pgchat started on the port of a first one could
  share it silently, each taking half the connections. This launcher binds without it, so a
  port in use is refused whatever the worker count.
- **HOST=0.0.0.0 without ALLOWED_HOSTS.** The server started, and every browser on another
  machine got Django's DisallowedHost page. The check lives here, not in a Django system
  check, because only ``make run`` knows both halves: the address hypercorn will bind
  (``HOST``) and the names Django will accept (``ALLOWED_HOSTS``, read by config/settings.py
  from the same environment); Django never learns the bind address.

The socket bound here is the one hypercorn serves (``--bind fd://N``, hypercorn's option for
an inherited socket), so nothing can take the port between the check and the serving. Then
this process replaces itself with hypercorn (exec): Ctrl-C and signals reach hypercorn as
they did when ``make run`` started it directly.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import os
import socket
import sys
from collections.abc import Sequence

EXIT_BAD_SETTING = 2  # HOST/ALLOWED_HOSTS: fix the command
EXIT_CANNOT_LISTEN = 1  # the port or address: fix the machine, or choose another


class LaunchError(Exception):
    """A reason not to start, worded for the person who typed ``make run``."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def is_loopback(host: str) -> bool:
    """Only this machine can reach ``host`` (so the default ALLOWED_HOSTS cover it)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: other machines reach it by that (or another) name
        return False


def check_allowed_hosts(host: str, allowed_hosts: str | None) -> None:
    """Refuse a non-loopback HOST unless ALLOWED_HOSTS says which names clients will use."""
    if is_loopback(host) or (allowed_hosts or "").strip():
        return
    example = f"{socket.gethostname()},192.168.1.20"
    raise LaunchError(
        f"pgchat: HOST={host} lets other machines connect, but Django answers only the names "
        f"in ALLOWED_HOSTS (default: this machine's loopback names): set it to the names or "
        f"addresses clients will use, e.g. ALLOWED_HOSTS={example} HOST={host} make run",
        EXIT_BAD_SETTING,
    )


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port``, inheritable by hypercorn, or a LaunchError."""
    address = host.strip("[]")
    sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
    try:
        # As hypercorn sets them, except SO_REUSEPORT (see the module docstring).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((address, port))
    except OSError as exc:
        sock.close()
        raise LaunchError(_bind_failure(host, port, exc), EXIT_CANNOT_LISTEN) from exc
    sock.set_inheritable(True)
    return sock


def _bind_failure(host: str, port: int, exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return f"pgchat: HOST={host} is not a name or address this machine can resolve"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"pgchat: port {port} on {host} is already in use (another pgchat or server?): "
            f"stop it, or choose another port, e.g. PORT={port + 1} make run"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"pgchat: HOST={host} is not an address of this machine"
    if exc.errno == errno.EACCES:
        return f"pgchat: no permission to listen on port {port}: choose one above 1023"
    return f"pgchat: cannot listen on {host}:{port}: {exc.strerror or exc}"


def url(host: str, port: int) -> str:
    address = host.strip("[]")
    return f"http://[{address}]:{port}/" if ":" in address else f"http://{address}:{port}/"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.serve",
        usage="%(prog)s HOST PORT [--workers N] [-- HYPERCORN_OPTION ...]",
        description="Check HOST and PORT, then exec hypercorn on config.asgi:application.",
    )
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--workers", type=int, default=1)
    ours = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in ours:  # what follows is hypercorn's, passed on as it is
        split = ours.index("--")
        ours, extra = ours[:split], ours[split + 1 :]
    args = parser.parse_args(ours)
    try:
        check_allowed_hosts(args.host, os.environ.get("ALLOWED_HOSTS"))
        sock = listen_socket(args.host, args.port)
    except LaunchError as exc:
        print(exc, file=sys.stderr)
        sys.exit(exc.exit_code)
    print(
        f"pgchat: serving on {url(args.host, args.port)}  "
        f"({args.workers} worker(s); Ctrl-C to stop)",
        flush=True,
    )
    os.execv(
        sys.executable,
        [
            sys.executable, "-m", "hypercorn", "config.asgi:application",
            "--bind", f"fd://{sock.fileno()}", "--workers", str(args.workers), *extra,
        ],
    )  # fmt: skip


if __name__ == "__main__":
    main()
