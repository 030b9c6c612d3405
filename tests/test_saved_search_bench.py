"""``python -m bench.saved_search_cost`` at a tiny size, so the saved-search benchmark cannot
rot: it loads, opens the saved searches in the server's own listener, runs the three phases
and finds matches in both designs. Timings are not asserted: they depend on the machine
(`make bench-saved-search` reports them)."""

from __future__ import annotations

import pytest

from .servers import run_bench


@pytest.mark.slow
def test_the_saved_search_bench_runs(db_url: str) -> None:
    summary = run_bench(
        db_url,
        "bench.saved_search_cost",
        *("--searches", "40", "--rate", "20", "--seconds", "2"),
        *("--rooms", "8", "--messages", "500", "--vocabulary", "300"),
    )
    phases = {row["phase"]: row for row in summary["results"]}
    assert set(phases) == {"none", "unnest", "per-query"}
    assert phases["none"]["searches"] == 0
    assert phases["unnest"]["searches"] == phases["per-query"]["searches"] == 40
    for row in phases.values():
        assert row["inserts"] >= 20
    assert phases["unnest"]["batches"] > 0
    assert phases["unnest"]["matches_delivered"] > 0  # commonest words, 40 searches
    assert phases["per-query"]["matches_delivered"] > 0
    assert summary["target_matching_cpu_share"] == 0.2
