"""``python -m bench.search_queries`` at a tiny size, so the search benchmark cannot rot: it
loads, runs every query kind, finds something for each common and ``-word`` query, shows the
user nothing from a room they may not read, and measures the index and the writers.
Timings are not asserted: they depend on the machine (`make bench-search` reports them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .servers import PROJECT_DIR

BENCH_TIMEOUT_SECONDS = 120


@pytest.mark.slow
def test_the_search_bench_runs(db_url: str) -> None:
    argv = [sys.executable, "-m", "bench.search_queries", "--rooms", "8", "--messages", "3000"]
    argv += ["--vocabulary", "500", "--samples", "12", "--inserts", "20", "--explain"]
    completed = subprocess.run(
        argv,
        cwd=PROJECT_DIR,
        env={**os.environ, "DATABASE_URL": db_url},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=BENCH_TIMEOUT_SECONDS,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr[-4000:]
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    assert (summary["messages"], summary["readable_rooms"]) == (3000, 6)
    by_kind = {row["kind"]: row for row in summary["results"]}
    assert set(by_kind) == {"common", "rare", "phrase", "minus", "all"}
    assert by_kind["all"]["queries"] == 12
    assert by_kind["common"]["mean_results"] == by_kind["minus"]["mean_results"] == 20
    assert by_kind["rare"]["mean_results"] >= 1  # a word of a message the user may read
    assert summary["leaks"] == 0
    assert summary["index"]["gin_index_mib"] > 0
    for mode in ("committed_each", "one_transaction"):
        assert summary["writers"][mode]["per_s_with_index"] > 0
        assert summary["writers"][mode]["per_s_without"] > 0
    assert len(summary["writers"]["rounds"]) == 8  # with, without, with, without; two modes
    for kind in ("common", "rare", "phrase", "minus"):
        assert f"--- {kind}: " in completed.stderr  # the plans, for the README
