"""Leaderboards of sweeps and trials, read from MLflow (works for any sweep, old or remote)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Optional

import pandas as pd

from ktsweep.core.errors import UsageError
from ktsweep.core.pareto import Objective, pareto_front, parse_objectives
from ktsweep.tracking.records import (
    OBJECTIVE_METRIC,
    TAG_DIRECTION,
    TAG_OBJECTIVE,
    TAG_OBJECTIVES,
    TAG_SELECT,
    TAG_STATUS,
    TAG_STOPPED_EARLY,
    TAG_STRATEGY,
    TAG_SWEEP,
    TAG_TRIAL,
    find_runs,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from rich.table import Table

HIDDEN_PARAMS = ("tuner/bracket", "tuner/round", "tuner/epochs", "tuner/initial_epoch", "tuner/trial_id")
STOPPED_COLUMN = "stopped_at"  # the epoch after which a scheduler stopped the trial (only when one did)
FRONT_COLUMN = "front"  # with several objectives: "yes" for the trials on the Pareto front


def sweeps_frame(client: "MlflowClient", experiment_id: str) -> pd.DataFrame:
    """One row per sweep: name, strategy, status, trials, best objective."""
    rows = []
    for run in find_runs(client, experiment_id, kind="sweep"):
        tags, metrics = run.data.tags, run.data.metrics
        rows.append(
            {
                "sweep": tags.get(TAG_SWEEP),
                "strategy": tags.get(TAG_STRATEGY),
                "status": tags.get(TAG_STATUS, run.info.status.lower()),
                "completed": int(metrics.get("trials_completed", 0)),
                "failed": int(metrics.get("trials_failed", 0)),
                "objective": tags.get(TAG_OBJECTIVE),
                "best": metrics.get("best_objective"),
                "started": pd.to_datetime(run.info.start_time, unit="ms"),
            }
        )
    frame = pd.DataFrame(rows, columns=["sweep", "strategy", "status", "completed", "failed", "objective", "best", "started"])
    return frame.sort_values("started", ascending=False, ignore_index=True)


def sweep_run(client: "MlflowClient", experiment_id: str, sweep: str) -> Any:
    runs = find_runs(client, experiment_id, sweep=sweep, kind="sweep")
    if not runs:
        raise UsageError(f"no sweep named {sweep!r} in this tracking store; `ktsweep list` shows the sweeps")
    return runs[0]


def trials_frame(
    client: "MlflowClient", experiment_id: str, sweep: str, *, runs: Optional[list[Any]] = None,
) -> tuple[pd.DataFrame, str, str]:
    """One row per trial of a sweep, best first; also the objective's name and direction.
    With several objectives, a column per objective and ``front``, the front first.
    ``runs``: the sweep's trial runs, when the caller has already read them."""
    parent = sweep_run(client, experiment_id, sweep)
    objective = parent.data.tags.get(TAG_OBJECTIVE, "objective")
    direction = parent.data.tags.get(TAG_DIRECTION, "max")
    objectives = sweep_objectives(parent)
    rows = []
    for run in find_runs(client, experiment_id, sweep=sweep, kind="trial") if runs is None else runs:
        params = {k: _number(v) for k, v in run.data.params.items() if k not in HIDDEN_PARAMS}
        metrics = run.data.metrics
        rows.append(
            {
                "trial": run.data.tags.get(TAG_TRIAL),
                "status": run.data.tags.get(TAG_STATUS, run.info.status),
                objective: metrics.get(f"{OBJECTIVE_METRIC}{objective}", metrics.get("objective")),
                "best_epoch": metrics.get("best_epoch"),
                **{o.name: metrics.get(f"{OBJECTIVE_METRIC}{o.name}") for o in objectives[1:]},
                STOPPED_COLUMN: _number(run.data.tags.get(TAG_STOPPED_EARLY, "nan")),
                "seconds": metrics.get("trial_seconds"),
                **params,
            }
        )
    frame = pd.DataFrame(rows)
    if STOPPED_COLUMN in frame and frame[STOPPED_COLUMN].isna().all():
        frame = frame.drop(columns=STOPPED_COLUMN)  # no trial was stopped early: no column
    if not frame.empty:
        frame = frame.sort_values(objective, ascending=direction == "min", na_position="last", ignore_index=True)
    if objectives and not frame.empty:
        points = [{o.name: row[objective if i == 0 else o.name] for i, o in enumerate(objectives)}
                  for _, row in frame.iterrows()]
        on_front = set(pareto_front([{k: v for k, v in p.items() if v is not None} for p in points], objectives))
        frame.insert(3, FRONT_COLUMN, ["yes" if i in on_front else "" for i in range(len(frame))])
        frame = frame.sort_values(FRONT_COLUMN, ascending=False, kind="stable", ignore_index=True)
    return frame, objective, direction


def sweep_objectives(parent: Any) -> list[Objective]:
    """A sweep's ``sweep.objectives`` from its run (empty: one objective)."""
    return parse_objectives((parent.data.tags.get(TAG_OBJECTIVES) or "").split(","))


def final_model(run: Any) -> Optional[str]:
    """What the sweep published, and how it tested (``ktsweep show``, the report's summary)."""
    made = run.data.tags.get("ktsweep.final")
    if not made:
        return None
    if run.data.tags.get(TAG_SELECT):  # several objectives: which trial of the front, and why
        made += (f" (trial {run.data.tags.get('ktsweep.best_trial_id')}, picked from the Pareto front by "
                 f"sweep.select={run.data.tags[TAG_SELECT]!r})")
    tests = ", ".join(f"{k}={v:.4f}" for k, v in sorted(run.data.metrics.items()) if k.startswith("test_"))
    return made + (f"; test set: {tests}" if tests else "")


def backend_of(run: Any) -> str:
    """The Keras backend the sweep ran on, with its version (``ktsweep show``, the report's summary)."""
    name = run.data.tags.get("ktsweep.backend")
    return f"{name} {run.data.tags.get('ktsweep.backend_version', '')}".strip() if name else "not recorded"


def _number(value: str) -> Any:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            continue
    return value


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def rich_table(frame: pd.DataFrame, *, title: str, top: Optional[int] = None) -> "Table":
    from rich.table import Table

    table = Table(title=title)
    for column in frame.columns:
        table.add_column(str(column), justify="right" if frame[column].dtype.kind in "if" else "left")
    for _, row in (frame.head(top) if top else frame).iterrows():
        table.add_row(*(_cell(value) for value in row.tolist()))
    return table
