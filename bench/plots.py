"""``python -m bench.plots``: pictures of the benchmarks' JSON, for the README (issue 15).

Receives: the saved stdout of ``python -m bench`` (fan-out: its last line is a JSON list of
results) and of ``python -m bench.writers`` (its last line is a JSON object with ``cells``);
``make bench`` saves both under ``bench/results/`` and then runs this.
Hands on: PNG files in ``--out``: ``fanout_p99.png`` and ``fanout_cpu.png`` (p99 latency
and server CPU per frame against subscribers, one line per target: pgchat beside the
references), and ``writers.png`` (commits/s against concurrent writers, one line per
variant). A missing or unreadable input only skips its pictures.
If it fails: no pictures; the benchmarks' own tables and JSON are already written.

matplotlib is a bench-only dependency (requirements-dev.txt): the server never imports
this module. The Agg backend draws without a display.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the backend

Series = dict[str, list[tuple[float, float]]]


def last_json(path: Path) -> Any:
    """The last line of ``path`` that parses as JSON (the benchmarks print it last)."""
    for line in reversed(path.read_text().splitlines()):
        line = line.strip()
        if line.startswith(("{", "[")):
            try:
                return json.loads(line)
            except ValueError:
                continue
    raise ValueError(f"{path}: no JSON line")


def fanout_series(results: Iterable[dict[str, Any]], field: str) -> Series:
    """{target: [(subscribers, value)]} for the results that measured ``field``. A result
    that stopped with an error or lost events (subscribers refused: the per-connection
    reference past ``max_connections``) is left out: its figures are not of its x."""
    series: Series = defaultdict(list)
    for result in results:
        value = result.get(field)
        if value is not None and not result.get("error") and not result.get("lost"):
            series[result["target"]].append((float(result["subscribers"]), float(value)))
    return {target: sorted(points) for target, points in series.items()}


def writers_series(summary: dict[str, Any]) -> Series:
    """{variant: [(writers, commits/s)]}; with ``--listeners`` at several counts, one line
    per variant and count ("pgchat-64, 8 listeners")."""
    cells = [c for c in summary.get("cells", []) if c.get("commits_per_s") is not None]
    several = len({c.get("listeners", 0) for c in cells}) > 1
    series: Series = defaultdict(list)
    for cell in cells:
        name = cell["variant"]
        if several:
            name += f", {cell.get('listeners', 0)} listeners"
        series[name].append((float(cell["writers"]), cell["commits_per_s"]))
    return {name: sorted(points) for name, points in series.items()}


def draw(
    series: Series, path: Path, *, title: str, xlabel: str, ylabel: str, logy: bool = False
) -> Path:
    """One line per series, markers on the measured points; x on a log scale, ticked at the
    measured sizes."""
    figure, axes = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for name, points in series.items():
        xs, ys = zip(*points, strict=True)
        axes.plot(xs, ys, marker="o", linewidth=2 if name.startswith("pgchat") else 1, label=name)
    axes.set_xscale("log")
    sizes = sorted({x for points in series.values() for x, _ in points})
    axes.set_xticks(sizes, [f"{x:,.0f}" for x in sizes])
    axes.minorticks_off()
    if logy:  # commits/s: plain INSERT is an order of magnitude above the notifying ones
        axes.set_yscale("log")
    else:
        axes.set_ylim(bottom=0)
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def plot_fanout(results: list[dict[str, Any]], out: Path) -> list[Path]:
    written = []
    p99 = fanout_series(results, "p99_ms")
    if p99:
        written.append(
            draw(p99, out / "fanout_p99.png", title="Fan-out: p99 latency",
                 xlabel="subscribers", ylabel="p99 ms (commit to receipt)")
        )  # fmt: skip
    cpu = fanout_series(results, "cpu_us_per_frame")
    if cpu:
        written.append(
            draw(cpu, out / "fanout_cpu.png", title="Fan-out: server CPU per frame",
                 xlabel="subscribers", ylabel="CPU µs per frame")
        )  # fmt: skip
    return written


def plot_writers(summary: dict[str, Any], out: Path) -> list[Path]:
    series = writers_series(summary)
    if not series:
        return []
    return [
        draw(series, out / "writers.png", title="Writers: commits/s (one INSERT per commit)",
             xlabel="concurrent writers", ylabel="commits/s (log scale)", logy=True)
    ]  # fmt: skip


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.plots", description=__doc__)
    parser.add_argument("--fanout", type=Path, help="saved stdout of python -m bench")
    parser.add_argument("--writers", type=Path, help="saved stdout of python -m bench.writers")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for source, plot in ((args.fanout, plot_fanout), (args.writers, plot_writers)):
        if source is None:
            continue
        try:
            data = last_json(source)
        except (OSError, ValueError) as exc:
            print(f"skipped: {exc}", file=sys.stderr)
            continue
        written += plot(data, args.out)
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
