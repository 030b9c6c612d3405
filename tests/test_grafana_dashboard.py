"""docs/grafana/pgchat.json loads, and every metric its panels query is one pgchat exports
(issue 15, point 6): a renamed metric breaks this test, not an operator's dashboard."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, generate_latest

from chat import metrics

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana" / "pgchat.json"
SUFFIXES = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}


def exported_names() -> set[str]:
    """The series names /metrics can show: each family's samples, by its type."""
    text = generate_latest(REGISTRY).decode() + metrics.exposition(0.25).decode()
    names = set()
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        if family.endswith("_created"):  # a counter's start time, not worth a panel
            continue
        base = family.removesuffix("_total") if kind == "counter" else family
        names |= {base + suffix for suffix in SUFFIXES.get(kind, [""])}
    return names


def queries(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_the_dashboard_queries_only_metrics_the_app_exports() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = queries(dashboard)
    assert len(exprs) >= 10
    used = {name for expr in exprs for name in re.findall(r"\bpgchat_\w+", expr)}
    exported = {name for name in exported_names() if name.startswith("pgchat_")}
    assert used - exported == set(), f"not exported: {sorted(used - exported)}"
    # Every pgchat family is on the dashboard (a new metric gets a panel too).
    families = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in exported}
    shown = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in used}
    assert families - shown == set(), f"no panel: {sorted(families - shown)}"
