"""Build the Keras Tuner oracle a sweep runs on: the strategy, unchanged."""

from __future__ import annotations

import importlib
import inspect
import math
import os
from dataclasses import asdict
from typing import Any, Optional

import keras_tuner as kt

STRATEGY_NAMES = {
    "RandomSearchOracle": "random",
    "HyperbandOracle": "hyperband",
    "BayesianOptimizationOracle": "bayesian",
    "GridSearchOracle": "grid",
}


def strategy_name(target: str) -> str:
    """A short name for a tuner ``_target_`` (``keras_tuner.oracles.HyperbandOracle`` -> hyperband)."""
    cls = target.rsplit(".", 1)[-1]
    return STRATEGY_NAMES.get(cls, cls)


def build_oracle(
    tuner: Any,
    *,
    objective: str,
    direction: str,
    max_trials: Optional[int],
    hypermodel: kt.HyperModel,
    directory: str,
) -> kt.Oracle:
    """Instantiate the oracle named by ``tuner._target_``, give it the search space and a home.

    ``max_trials`` is a cap for every strategy; Hyperband's constructor does not
    take it (its brackets decide), so it is set as an attribute there. When the
    directory already holds an oracle, its state is reloaded: that is resume.
    """
    from hydra.utils import instantiate

    params = {key: value for key, value in asdict(tuner).items() if key != "max_trials"}
    module_name, _, cls_name = tuner._target_.rpartition(".")
    accepts_max_trials = "max_trials" in inspect.signature(
        getattr(importlib.import_module(module_name), cls_name).__init__
    ).parameters
    if accepts_max_trials:
        params["max_trials"] = max_trials
    oracle: kt.Oracle = instantiate(params, objective=kt.Objective(objective, direction))
    if not accepts_max_trials:
        oracle.max_trials = max_trials
    oracle.verbose = 0  # progress is ours to show
    parent, name = os.path.split(os.path.abspath(directory))
    oracle._set_project_dir(parent, name)
    if os.path.exists(os.path.join(directory, "oracle.json")):
        reload_oracle(oracle)
    hp = oracle.get_space()
    hypermodel.declare_hyperparameters(hp)
    if not hp.space:  # a plain kt.HyperModel declares its space while building
        hypermodel.build(hp)
    oracle.update_space(hp)
    return oracle


def reload_oracle(oracle: kt.Oracle) -> None:
    """Resume an oracle from its directory, retrying only the trials that did not finish.

    Keras Tuner's ``reload`` retries every trial its saved state lists as ongoing, but
    ``end_trial`` saves that state before it takes the trial off the list: a driver
    killed after a trial finished, and before the next save, would run the finished
    trial again. ``end_order`` lists the trials that are over (completed, failed, or
    out of retries), so those are dropped from the retry queue, and none is queued twice.
    """
    oracle.reload()
    over = set(oracle.end_order)
    queue: list[str] = []
    for trial_id in oracle._retry_queue:
        if trial_id not in over and trial_id not in queue:
            queue.append(trial_id)
    oracle._retry_queue = queue


def planned_trials(oracle: kt.Oracle) -> Optional[int]:
    """How many trials the strategy will run, when it can be known in advance."""
    cap = oracle.max_trials
    if isinstance(oracle, kt.oracles.HyperbandOracle):
        brackets = oracle._get_num_brackets()
        per_iteration = sum(
            oracle._get_size(bracket, round_num)
            for bracket in range(brackets)
            for round_num in range(oracle._get_num_rounds(bracket))
        )
        total = per_iteration * oracle.hyperband_iterations
        return min(total, cap) if cap else total
    if isinstance(oracle, kt.oracles.GridSearchOracle):
        space = oracle.get_space().space
        if any(hp.conditions for hp in space):
            return cap  # conditional hyperparameters: the grid's size depends on the values
        size = math.prod(len(list(hp.values)) for hp in space)
        return min(size, cap) if cap else size
    return cap


def best_trials(oracle: kt.Oracle, num_trials: int = 1) -> list[kt.engine.trial.Trial]:
    """The best completed trials (Keras Tuner pads its own list with failed ones)."""
    return [t for t in oracle.get_best_trials(num_trials) if t.status == "COMPLETED"]
