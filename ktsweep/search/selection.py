"""Which trials a sweep publishes: the oracle's best for one objective; with ``sweep.objectives``, the
trial ``sweep.select`` picks (the knee of the Pareto front by default), and the front itself."""

from __future__ import annotations

from typing import Any

from ktsweep.conf.schema import SweepConf
from ktsweep.conf.schema.sweep import objectives_of
from ktsweep.core.pareto import Objective, pareto_front, parse_selection
from ktsweep.search.oracles import best_trials


def trial_point(trial: Any, objectives: list[Objective]) -> dict[str, float]:
    """A completed trial's value of each objective, at its best epoch (as the searcher gave them)."""
    point = {}
    for objective in objectives:
        if trial.metrics.exists(objective.name):
            point[objective.name] = float(trial.metrics.get_last_value(objective.name))
    return point


def _completed(oracle: Any) -> list[Any]:
    return sorted((t for t in oracle.trials.values() if t.status == "COMPLETED"), key=lambda t: t.trial_id)


def ranked_trials(oracle: Any, sweep: SweepConf) -> tuple[list[Any], list[dict[str, Any]]]:
    """The trials in the order they would be published, best first (may be empty: no trial meets the
    rule), and the Pareto front as ``{"trial_id", "values"}`` per trial on it (empty: one objective)."""
    objectives = objectives_of(sweep)
    if not objectives:
        return best_trials(oracle, len(oracle.trials)), []
    done = _completed(oracle)
    points = [trial_point(t, objectives) for t in done]
    order = parse_selection(sweep.select).rank(points, objectives)
    front = [{"trial_id": done[i].trial_id, "values": points[i]} for i in pareto_front(points, objectives)]
    return [done[i] for i in order], front
