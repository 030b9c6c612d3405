"""``python -m bench.plots`` draws its pictures from tiny synthetic benchmark output, and
skips an input it cannot read instead of failing (issue 15, point 6)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import plots

PNG = b"\x89PNG\r\n\x1a\n"


def fanout_output(path: Path) -> Path:
    results: list[dict[str, Any]] = [
        {"target": target, "subscribers": n, "p99_ms": 5.0 + n / 100, "cpu_us_per_frame": cpu}
        for target, cpu in (("pgchat", 9.0), ("ceiling", 4.0), ("per-connection", 30.0))
        for n in (10, 100, 1000)
    ]
    results.append({"target": "pgchat", "subscribers": 10000, "p99_ms": None, "error": "x"})
    results.append({"target": "per-connection", "subscribers": 5000, "p99_ms": 1.0, "lost": 9})
    path.write_text("target N p99\n(table)\n" + json.dumps(results) + "\n")
    return path


def writers_output(path: Path) -> Path:
    cells = [
        {"variant": variant, "writers": w, "commits_per_s": rate * w, "p50_ms": 1.0}
        for variant, rate in (("plain", 900.0), ("notify", 300.0), ("pgchat-64", 250.0))
        for w in (1, 8, 32)
    ]
    path.write_text("variant writers\n" + json.dumps({"bench": "writers", "cells": cells}) + "\n")
    return path


def test_plots_are_written_from_both_benchmarks_output(tmp_path: Path) -> None:
    out = tmp_path / "results"
    status = plots.main(
        [
            "--fanout", str(fanout_output(tmp_path / "fanout.txt")),
            "--writers", str(writers_output(tmp_path / "writers.txt")),
            "--out", str(out),
        ]
    )  # fmt: skip
    assert status == 0
    names = {"fanout_p99.png", "fanout_cpu.png", "writers.png"}
    assert {p.name for p in out.iterdir()} == names
    for name in names:
        picture = (out / name).read_bytes()
        assert picture.startswith(PNG)
        assert len(picture) > 5000  # a drawn figure, not a stub


def test_runs_that_failed_or_lost_events_are_not_drawn() -> None:
    results = [
        {"target": "a", "subscribers": 10, "p99_ms": 1.0},
        {"target": "a", "subscribers": 100, "p99_ms": 2.0, "lost": 3},
        {"target": "b", "subscribers": 10, "p99_ms": 5.0, "error": "refused"},
    ]
    assert plots.fanout_series(results, "p99_ms") == {"a": [(10.0, 1.0)]}


def test_writers_at_several_listener_counts_get_a_line_each() -> None:
    cells = [
        {"variant": "notify", "writers": w, "listeners": n, "commits_per_s": 10.0 * w + n}
        for n in (0, 8)
        for w in (1, 8)
    ]
    assert plots.writers_series({"cells": cells}) == {
        "notify, 0 listeners": [(1.0, 10.0), (8.0, 80.0)],
        "notify, 8 listeners": [(1.0, 18.0), (8.0, 88.0)],
    }
    one_count = [c for c in cells if c["listeners"] == 8]
    assert set(plots.writers_series({"cells": one_count})) == {"notify"}


def test_an_unreadable_input_skips_only_its_pictures(tmp_path: Path) -> None:
    broken = tmp_path / "fanout.txt"
    broken.write_text("the run was interrupted before its JSON\n")
    out = tmp_path / "results"
    writers = str(writers_output(tmp_path / "writers.txt"))
    status = plots.main(["--fanout", str(broken), "--writers", writers, "--out", str(out)])
    assert status == 0
    assert [p.name for p in out.iterdir()] == ["writers.png"]
