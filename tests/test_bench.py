"""``make bench`` at a tiny size in the suite, so the benchmark cannot rot.

A real run of ``python -m bench`` against the suite's test database: real target servers,
real subscribers, real INSERTs. Only delivery is asserted (nothing lost, nothing twice) and
that the last line of stdout is the JSON summary: timings depend on the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .helpers import DEADLINE, running_servers
from .servers import PROJECT_DIR, wait_for_server_backends_gone


@pytest.mark.slow  # a real benchmark run, if a tiny one: its servers start and stop
@pytest.mark.parametrize(
    ("targets", "subscribers"),
    [
        pytest.param("pgchat,ceiling,hypercorn-floor", 20, id="pgchat-and-references"),
        # Five sessions of its own: small enough not to crowd the suite's other servers.
        pytest.param("per-connection", 5, id="per-connection"),
    ],
)
def test_bench_delivers_every_event_once(db_url: str, targets: str, subscribers: int) -> None:
    argv = [sys.executable, "-m", "bench", "--sizes", str(subscribers), "--duration", "2"]
    argv += ["--rate", "10", "--targets", targets]
    before = running_servers(db_url)
    completed = subprocess.run(
        argv,
        cwd=PROJECT_DIR,
        env={**os.environ, "DATABASE_URL": db_url},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=DEADLINE * 4,  # a hung run fails this test instead of the whole suite
    )
    # Its pgchat server's sessions end a moment after it: gone before the next test counts.
    wait_for_server_backends_gone(db_url, running=before)
    assert completed.returncode == 0, completed.stdout + completed.stderr[-4000:]
    results = json.loads(completed.stdout.strip().splitlines()[-1])
    assert {r["target"]: (r["subscribers"], r["lost"], r["duplicated"]) for r in results} == {
        target: (subscribers, 0, 0) for target in targets.split(",")
    }, completed.stdout
