"""Population Based Training in the report: who copied whom and when, and the schedules it made.

Read from the trials' MLflow runs only (``ktsweep.pbt.lineage`` tags, and the params each run
started with), so an old sweep's report draws them too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

from ktsweep.tracking.records import TAG_PBT_LINEAGE, TAG_TRIAL


@dataclass(frozen=True)
class Exploit:
    trial: str
    epoch: int  # the recipient's epoch after which it copied
    donor: str
    donor_epoch: int
    values: dict[str, tuple[Any, Any]]  # mutable hyperparameter -> (before, after)
    skipped: Optional[str] = None


def exploits(runs: list[Any]) -> list[Exploit]:
    """Every exploit of the sweep, in epoch order."""
    found = []
    for run in runs:
        raw = run.data.tags.get(TAG_PBT_LINEAGE)
        for entry in json.loads(raw) if raw else []:
            found.append(Exploit(run.data.tags[TAG_TRIAL], int(entry["epoch"]), str(entry["donor"]),
                                 int(entry["donor_epoch"]), {k: tuple(v) for k, v in (entry.get("hp") or {}).items()},
                                 entry.get("skipped")))
    return sorted(found, key=lambda e: (e.epoch, e.trial))


def schedules(runs: list[Any], name: str) -> dict[str, list[tuple[int, float]]]:
    """Per trial, ``name``'s value from each epoch on where it changed: its first value (the run's
    param) at epoch 0, then each exploit's new value from the epoch after it."""
    lineage = exploits(runs)
    out: dict[str, list[tuple[int, float]]] = {}
    for run in runs:
        trial, first = run.data.tags[TAG_TRIAL], run.data.params.get(name)
        steps = [(0, _number(first))] if _number(first) is not None else []
        steps += [(e.epoch + 1, _number(e.values[name][1])) for e in lineage if e.trial == trial and name in e.values]
        if steps and all(value is not None for _, value in steps):
            out[trial] = steps  # type: ignore[assignment]
    return out


def _number(value: Any) -> Optional[float]:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def population_figures(runs: list[Any], *, epochs: int, best: str) -> list[tuple[str, Any]]:
    """The lineage chart, and one schedule chart per perturbed number (none for a sweep without PBT)."""
    import plotly.graph_objects as go

    lineage = [e for e in exploits(runs) if e.skipped is None]
    if not lineage:
        return []
    trials = sorted({run.data.tags[TAG_TRIAL] for run in runs}, key=lambda t: (len(t), t))
    traces = [go.Scatter(x=[0, epochs - 1], y=[trial, trial], mode="lines", showlegend=False, hoverinfo="skip",
                         line=dict(color="#bbb", width=6 if trial == best else 2)) for trial in trials]
    for e in lineage:
        changed = ", ".join(f"{k}: {_short(a)} -> {_short(b)}" for k, (a, b) in e.values.items())
        traces.append(go.Scatter(
            x=[e.donor_epoch, e.epoch + 0.5], y=[e.donor, e.trial], mode="lines+markers", showlegend=False,
            line=dict(color="#1f77b4"), marker=dict(symbol=["circle", "arrow-bar-up"], size=[6, 9]),
            text=f"trial {e.trial} copied trial {e.donor} (its epoch {e.donor_epoch}) after epoch {e.epoch}: {changed}",
            hoverinfo="text"))
    figure = go.Figure(traces)
    figure.update_layout(xaxis_title="epoch", yaxis=dict(title="trial", type="category", categoryarray=trials))
    charts: list[tuple[str, Any]] = [("Population lineage (who copied whom, and when)", figure)]
    for name in sorted({name for e in lineage for name in e.values}):
        steps = schedules(runs, name)
        if not steps:
            continue
        lines = [go.Scatter(x=[s[0] for s in points] + [epochs - 1], y=[s[1] for s in points] + [points[-1][1]],
                            mode="lines", line=dict(shape="hv", width=4 if trial == best else 1.5),
                            name=f"trial {trial}") for trial, points in sorted(steps.items())]
        chart = go.Figure(lines)
        positive = all(value > 0 for points in steps.values() for _, value in points)
        chart.update_layout(xaxis_title="epoch", yaxis=dict(title=name, type="log" if positive else "linear"))
        charts.append((f"Schedule of {name}", chart))
    return charts


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
