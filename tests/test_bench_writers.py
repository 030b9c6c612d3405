"""``python -m bench.writers`` at a tiny size, so issue 15's writers scenario cannot rot: it
runs every variant through the wheel's pgbench with a pgchat server and subscribers
attached, and reports commits and latencies for each cell. Figures are not asserted: they
depend on the machine (`make bench` reports them)."""

from __future__ import annotations

import pytest

from .servers import run_bench


@pytest.mark.slow
def test_the_writers_bench_runs_every_variant(db_url: str) -> None:
    summary = run_bench(
        db_url, "bench.writers", "--writers", "1,2", "--seconds", "1", "--subscribers", "4"
    )
    cells = {(cell["variant"], cell["writers"]): cell for cell in summary["cells"]}
    variants = ("plain", "notify", "pgchat-1", "pgchat-64")
    assert set(cells) == {(v, w) for v in variants for w in (1, 2)}
    for cell in cells.values():
        assert cell["error"] is None
        assert cell["commits_per_s"] > 0
        assert 0 < cell["p50_ms"] <= cell["p99_ms"]
    assert set(summary["share_of_notify"]) == {"1", "2"}


@pytest.mark.slow
def test_the_writers_bench_runs_with_listening_sessions(db_url: str) -> None:
    """``--listeners``: every cell again with that many plain LISTEN sessions attached, each
    of which receives the writers' notifications (issue 15.4's listener-count table)."""
    summary = run_bench(
        db_url,
        "bench.writers",
        *("--writers", "2", "--seconds", "1", "--subscribers", "2"),
        *("--variants", "notify,pgchat-64", "--listeners", "0,3"),
    )
    cells = {(c["variant"], c["listeners"]): c for c in summary["cells"]}
    assert set(cells) == {(v, n) for v in ("notify", "pgchat-64") for n in (0, 3)}
    assert all(c["error"] is None and c["commits_per_s"] > 0 for c in cells.values())
    assert set(summary["commits_by_listeners"]) == {"0", "3"}
    # Each of the 3 sessions heard pgchat's commits (the trigger notifies channel chat).
    assert summary["fewest_received_by_listeners"]["3"] > 0


@pytest.mark.slow
def test_the_writers_bench_runs_without_a_server(db_url: str) -> None:
    """``--no-server``: the trigger's cost to the writers alone, nobody listening."""
    summary = run_bench(
        db_url, "bench.writers", "--writers", "1", "--seconds", "1", "--no-server",
        "--variants", "notify,pgchat-64",
    )  # fmt: skip
    assert summary["server"] is False
    assert summary["subscribers"] == 0
    assert [(c["variant"], c["error"]) for c in summary["cells"]] == [
        ("notify", None),
        ("pgchat-64", None),
    ]
