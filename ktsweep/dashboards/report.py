"""A sweep's HTML report: one self-contained page (plotly.js inlined, works offline).

Reads only from MLflow, so it works for an old sweep or one another machine ran.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Sequence

import pandas as pd

from ktsweep.dashboards.front import front_figure
from ktsweep.dashboards.leaderboard import (
    FRONT_COLUMN,
    HIDDEN_PARAMS,
    STOPPED_COLUMN,
    backend_of,
    final_model,
    sweep_objectives,
    sweep_run,
    trials_frame,
)
from ktsweep.dashboards.population import exploits, population_figures
from ktsweep.tracking.records import TAG_SELECT, TAG_STOPPED_EARLY, TAG_STRATEGY, TAG_TRIAL, find_runs

if TYPE_CHECKING:
    from mlflow import MlflowClient

MIN_TRIALS_FOR_IMPORTANCE = 8
MAX_CURVES = 100  # learning curves drawn; a bigger sweep shows its best trials' (one history query each)
SORT_JS = """
<script>
function sortTable(col){const t=document.getElementById('leaderboard');const rows=[...t.tBodies[0].rows];
const asc=t.dataset.col==col&&t.dataset.dir!='asc';t.dataset.col=col;t.dataset.dir=asc?'asc':'desc';
rows.sort((a,b)=>{const x=a.cells[col].dataset.v,y=b.cells[col].dataset.v;const nx=parseFloat(x),ny=parseFloat(y);
const c=(isNaN(nx)||isNaN(ny))?x.localeCompare(y):nx-ny;return asc?c:-c});rows.forEach(r=>t.tBodies[0].appendChild(r));}
</script>"""


def hyperparameter_columns(frame: pd.DataFrame, objective: str, also: Sequence[str] = ()) -> list[str]:
    fixed = {"trial", "status", objective, "best_epoch", STOPPED_COLUMN, "seconds", *HIDDEN_PARAMS, *also}
    return [c for c in frame.columns if c not in fixed]


@dataclass
class Curve:
    trial: str
    points: list[tuple[int, float]]  # (absolute epoch, objective)
    bracket: Optional[str] = None  # Hyperband's tuner/bracket
    round: Optional[str] = None
    parent: Optional[str] = None  # the trial this one continued (tuner/trial_id)
    stopped_at: Optional[str] = None  # the epoch after which a scheduler stopped the trial


def learning_curves(
    client: "MlflowClient", experiment_id: str, sweep: str, objective: str, *,
    runs: Optional[list[Any]] = None, direction: str = "max", limit: Optional[int] = None,
) -> dict[str, Curve]:
    """Per-epoch objective of every trial (steps are absolute epochs, so Hyperband continuations line up).

    ``limit``: with more trials than that, only the best ``limit`` (and the trials they continued) are
    read: each curve is one MLflow query, and a thousand lines cannot be told apart anyway."""
    runs = find_runs(client, experiment_id, sweep=sweep, kind="trial") if runs is None else runs
    if limit is not None and len(runs) > limit:
        runs = best_runs(runs, direction, limit)
    curves = {}
    for run in runs:
        params = run.data.params
        history = client.get_metric_history(run.info.run_id, objective)
        trial = run.data.tags[TAG_TRIAL]
        parent = params.get("tuner/trial_id")
        curves[trial] = Curve(trial, sorted((m.step, m.value) for m in history), params.get("tuner/bracket"),
                              params.get("tuner/round"), None if parent in (None, "None") else parent,
                              run.data.tags.get(TAG_STOPPED_EARLY))
    return curves


def best_runs(runs: list[Any], direction: str, count: int) -> list[Any]:
    """The ``count`` trial runs with the best objective, plus the Hyperband trials they continued."""
    sign = -1.0 if direction == "max" else 1.0

    def key(run: Any) -> float:
        value = run.data.metrics.get("objective")
        return math.inf if value is None or math.isnan(value) else sign * value

    by_trial = {run.data.tags[TAG_TRIAL]: run for run in runs}
    chosen = {run.data.tags[TAG_TRIAL]: run for run in sorted(runs, key=key)[:count]}
    for run in list(chosen.values()):
        parent = run.data.params.get("tuner/trial_id")
        while parent in by_trial and parent not in chosen:
            chosen[parent] = by_trial[parent]
            parent = by_trial[parent].data.params.get("tuner/trial_id")
    return list(chosen.values())


def lineage_root(curves: dict[str, Curve], trial: str) -> str:
    """The first trial of a Hyperband chain of continuations."""
    seen = set()
    while curves[trial].parent in curves and trial not in seen:
        seen.add(trial)
        trial = curves[trial].parent  # type: ignore[assignment]
    return trial


def log_sampled(client: "MlflowClient", run_id: str) -> set[str]:
    """Hyperparameters the search sampled on a log scale, from the oracle's state logged with the sweep
    (none for a sweep without it: linear axes, as before)."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ktsweep-report-") as folder:
        try:
            path = client.download_artifacts(run_id, "oracle/oracle.json", folder)
            with open(path) as handle:
                space = json.load(handle)["hyperparameters"]["space"]
        except Exception:  # not logged (yet), or from another Keras Tuner version
            return set()
    return {hp["config"]["name"] for hp in space if hp.get("config", {}).get("sampling") == "log"}


def convergence(runs: list[Any], direction: str) -> list[tuple[int, str, Optional[float], float]]:
    """(finished trials, trial, its objective, best so far) in the order trials finished: the search converging.

    Failed trials count as finished (they used the budget) but do not move the best."""
    done = sorted((r for r in runs if r.info.end_time and r.info.status in ("FINISHED", "FAILED")),
                  key=lambda r: r.info.end_time)
    points: list[tuple[int, str, Optional[float], float]] = []
    best = math.nan
    for count, run in enumerate(done, start=1):
        value = run.data.metrics.get("objective")
        if value is not None and (math.isnan(best) or (value > best if direction == "max" else value < best)):
            best = value
        if not math.isnan(best):
            points.append((count, run.data.tags.get(TAG_TRIAL, "?"), value, best))
    return points


def log_axis(values: pd.Series) -> dict[str, Any]:
    """A parallel-coordinates axis in log10 (plotly's have no log type), ticks labelled with the real values."""
    logs = values.astype(float).map(math.log10)
    low, high = float(logs.min()), float(logs.max())
    decades = {float(t) for t in range(math.ceil(low), math.floor(high) + 1)}
    ticks = sorted(decades | {low, high})  # the ends, and every power of ten between them
    return dict(values=logs, tickvals=ticks, ticktext=[f"{10 ** t:.2g}" for t in ticks])


def importance(frame: pd.DataFrame, hps: list[str], objective: str) -> tuple[dict[str, float], str]:
    """Random-forest importance of each hyperparameter for the objective, with the caveat it needs."""
    done = frame.dropna(subset=[objective])
    if len(done) < MIN_TRIALS_FOR_IMPORTANCE or not hps:
        return {}, f"Only {len(done)} finished trials: too few to say which hyperparameters matter (needs {MIN_TRIALS_FOR_IMPORTANCE})."
    from sklearn.ensemble import RandomForestRegressor

    x = pd.get_dummies(done[hps].astype({c: str for c in hps if done[c].dtype == object}), dtype=float)
    forest = RandomForestRegressor(n_estimators=200, random_state=0).fit(x, done[objective])
    scores: dict[str, float] = {hp: 0.0 for hp in hps}
    for column, value in zip(x.columns, forest.feature_importances_):
        owner = next(hp for hp in hps if column == hp or column.startswith(f"{hp}_"))
        scores[owner] += float(value)
    return dict(sorted(scores.items(), key=lambda kv: -kv[1])), f"Random-forest importance over {len(done)} finished trials."


def figures(
    frame: pd.DataFrame, curves: dict[str, Curve], objective: str, best: str, importances: dict[str, float],
    *, log_scaled: frozenset[str] = frozenset(), converging: Sequence[tuple[int, str, Optional[float], float]] = (),
) -> list[tuple[str, Any]]:
    """The report's charts; ``log_scaled`` hyperparameters get log axes, ``converging`` (see ``convergence``)
    comes first."""
    import plotly.graph_objects as go

    done = frame.dropna(subset=[objective])
    hps = hyperparameter_columns(frame, objective)
    charts: list[tuple[str, Any]] = []
    if converging:
        charts.append(("Convergence", convergence_figure(converging, objective)))
    if len(done) and hps:
        dims = []
        for hp in hps:
            values = done[hp]
            numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
            if numeric and hp in log_scaled and (values > 0).all():
                dims.append(dict(label=f"{hp} (log)", **log_axis(values)))
            elif numeric:
                dims.append(dict(label=hp, values=values))
            else:  # categorical: integer codes with the category names as ticks
                cats = sorted(values.astype(str).unique())
                dims.append(dict(label=hp, values=values.astype(str).map(cats.index), tickvals=list(range(len(cats))), ticktext=cats))
        dims.append(dict(label=objective, values=done[objective]))
        charts.append(("Parallel coordinates", go.Figure(go.Parcoords(
            line=dict(color=done[objective], colorscale="Viridis", showscale=True), dimensions=dims))))
        numeric = [hp for hp in hps if pd.api.types.is_numeric_dtype(done[hp]) and not pd.api.types.is_bool_dtype(done[hp])]
        if numeric:
            splom = go.Figure(go.Splom(
                dimensions=[dict(label=hp, values=done[hp]) for hp in numeric],
                text=done["trial"], marker=dict(color=done[objective], colorscale="Viridis", showscale=True, size=7)))
            for index, hp in enumerate(numeric, start=1):  # dimension i is drawn on axes xaxis<i>, yaxis<i>
                if hp in log_scaled and (done[hp] > 0).all():
                    suffix = "" if index == 1 else str(index)
                    splom.update_layout({f"xaxis{suffix}": dict(type="log"), f"yaxis{suffix}": dict(type="log")})
            charts.append(("Scatter matrix", splom))
    traces = []  # one Figure from all traces: add_trace() re-validates the figure each time (slow with many)
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
    for trial, curve in curves.items():
        if not curve.points:
            continue
        points = list(curve.points)
        if curve.parent in curves and curves[curve.parent].points:  # continue the parent's line
            points.insert(0, curves[curve.parent].points[-1])
        is_best = trial == best
        label = f"trial {trial}" + (f" (bracket {curve.bracket}, round {curve.round})" if curve.bracket else "")
        color = palette[int(curve.bracket) % len(palette)] if curve.bracket and curve.bracket.isdigit() else None
        if curve.stopped_at is not None:
            label += f" (stopped early after epoch {curve.stopped_at})"
        traces.append(go.Scatter(
            x=[p[0] for p in points], y=[p[1] for p in points], mode="lines+markers", name=label,
            legendgroup=lineage_root(curves, trial), line=dict(width=4 if is_best else 1.5, color=color),
            opacity=1.0 if is_best else 0.55))
        if curve.stopped_at is not None:  # where the scheduler cut it
            traces.append(go.Scatter(
                x=[points[-1][0]], y=[points[-1][1]], mode="markers", name=f"trial {trial} stopped early",
                legendgroup=lineage_root(curves, trial), showlegend=False, marker=dict(symbol="x", size=11, color="#d62728")))
    curve_fig = go.Figure(data=traces)
    curve_fig.update_layout(xaxis_title="epoch", yaxis_title=objective)
    shown = f" (the best {len(curves)} of {len(frame)} trials)" if 0 < len(curves) < len(frame) else ""
    charts.append((f"Learning curves{shown}", curve_fig))
    if importances:
        charts.append(("Hyperparameter importance", go.Figure(go.Bar(x=list(importances), y=list(importances.values())))))
    return charts


def convergence_figure(points: Sequence[tuple[int, str, Optional[float], float]], objective: str) -> Any:
    import plotly.graph_objects as go

    figure = go.Figure()
    figure.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[3] for p in points], mode="lines",
                                line=dict(shape="hv", width=3), name=f"best {objective} so far"))
    scored = [p for p in points if p[2] is not None]
    figure.add_trace(go.Scatter(x=[p[0] for p in scored], y=[p[2] for p in scored], mode="markers", name="trial",
                                text=[f"trial {p[1]}" for p in scored], marker=dict(size=7, opacity=0.6)))
    figure.update_layout(xaxis=dict(title="finished trials", tick0=1, dtick=max(1, math.ceil(len(points) / 12))),
                         yaxis_title=objective)
    return figure


def build_report(client: "MlflowClient", experiment_id: str, sweep: str) -> str:
    """The report page as one HTML string."""
    parent = sweep_run(client, experiment_id, sweep)
    runs = find_runs(client, experiment_id, sweep=sweep, kind="trial")
    frame, objective, direction = trials_frame(client, experiment_id, sweep, runs=runs)
    tags, metrics = parent.data.tags, parent.data.metrics
    best = tags.get("ktsweep.best_trial_id", "")
    objectives = sweep_objectives(parent)
    hps = hyperparameter_columns(frame, objective, also=[FRONT_COLUMN, *(o.name for o in objectives)])
    importances, importance_note = importance(frame, hps, objective)
    converging = convergence(runs, direction)
    curves = learning_curves(client, experiment_id, sweep, objective, runs=runs, direction=direction, limit=MAX_CURVES)
    charts = figures(frame, curves, objective, best, importances,
                     log_scaled=frozenset(log_sampled(client, parent.info.run_id)), converging=converging)
    if objectives and len(frame):
        charts.insert(0, ("Pareto front", front_figure(frame, objectives, objective, best)))
    population = exploits(runs)
    charts += population_figures(runs, epochs=int(parent.data.params.get("epochs", 1)), best=best)
    best_row = frame[frame["trial"] == best].iloc[0].to_dict() if best and len(frame) else {}
    statuses = frame["status"].value_counts().to_dict() if len(frame) else {}
    header = {
        "strategy": tags.get(TAG_STRATEGY, "?"),
        "dataset": tags.get("ktsweep.data", "?"),
        "backend": backend_of(parent),
        "objective": (", ".join(f"{o.name} ({o.direction})" for o in objectives) + f"; published: {tags.get(TAG_SELECT)}"
                      if objectives else f"{objective} ({direction})"),
        "trials": (", ".join(f"{n} {s.lower()}" for s, n in sorted(statuses.items())) or "none")
        + (f" ({frame[STOPPED_COLUMN].notna().sum()} stopped early)" if STOPPED_COLUMN in frame else ""),
        "wall time": f"{metrics.get('wall_seconds', float('nan')):.0f} s",
        "best": f"{metrics.get('best_objective', float('nan')):.4f} (trial {best})" if best else "-",
        "best hyperparameters": ", ".join(f"{k}={_fmt(best_row.get(k))}" for k in hps) if best_row else "-",
        "final model": final_model(parent) or "-",
    }
    if objectives and FRONT_COLUMN in frame:
        header["pareto front"] = f"{(frame[FRONT_COLUMN] == 'yes').sum()} of {len(frame)} trials"
    if population:
        done = sum(e.skipped is None for e in population)
        header["population based training"] = f"{done} exploits" + (
            f" ({len(population) - done} skipped: the donor had moved on)" if done < len(population) else "")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>ktsweep: {html.escape(sweep)}</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
             "padding:3px 8px;text-align:right}th{cursor:pointer;background:#eee}.best{font-weight:bold;background:#fff6cc}</style>",
             SORT_JS, "</head><body>", f"<h1>Sweep {html.escape(sweep)}</h1><dl id='summary'>"]
    parts += [f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in header.items()]
    parts.append("</dl><h2>Leaderboard</h2><table id='leaderboard'><thead><tr>")
    parts += [f"<th onclick='sortTable({i})'>{html.escape(str(c))}</th>" for i, c in enumerate(frame.columns)]
    parts.append("</tr></thead><tbody>")
    for _, row in frame.iterrows():
        cls = " class='best'" if row["trial"] == best else ""
        cells = "".join(f"<td data-v='{html.escape(str(v))}'>{html.escape(_fmt(v))}</td>" for v in row.tolist())
        parts.append(f"<tr{cls} data-trial='{html.escape(str(row['trial']))}'>{cells}</tr>")
    parts.append("</tbody></table>")
    for index, (title, fig) in enumerate(charts):
        fig.update_layout(title=title, height=480)
        parts.append(f"<h2>{title}</h2>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=index == 0, div_id=f"chart-{index}"))
    parts.append(f"<p id='importance-note'>{html.escape(importance_note)}</p></body></html>")
    return "\n".join(parts)


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)
