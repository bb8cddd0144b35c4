"""Build the Keras Tuner oracle a sweep runs on: the strategy, unchanged."""

from __future__ import annotations

import importlib
import inspect
import json
import math
import os
from dataclasses import asdict
from typing import Any, Optional

import keras_tuner as kt


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
    keep_state_atomic(oracle)
    if os.path.exists(os.path.join(directory, "oracle.json")):
        reload_oracle(oracle)
    populate_space(oracle, hypermodel)
    return oracle


class _SpaceExplorer:
    """Keras Tuner's own search-space discovery (``BaseTuner``), without a tuner and its files:
    ``declare_hyperparameters``, then builds until every ``conditional_scope`` has been active once."""

    _populate_initial_space = kt.engine.base_tuner.BaseTuner._populate_initial_space
    _activate_all_conditions = kt.engine.base_tuner.BaseTuner._activate_all_conditions

    def __init__(self, oracle: kt.Oracle, hypermodel: kt.HyperModel) -> None:
        self.oracle, self.hypermodel = oracle, _CheckedBuild(hypermodel)


class _CheckedBuild:
    """The HyperModel, whose ``build`` must give a compiled Keras model: checked on the driver, before any trial."""

    def __init__(self, hypermodel: kt.HyperModel) -> None:
        self.hypermodel = hypermodel

    def declare_hyperparameters(self, hp: kt.HyperParameters) -> None:
        self.hypermodel.declare_hyperparameters(hp)

    def build(self, hp: kt.HyperParameters) -> Any:
        import keras

        from ktsweep.core.errors import UsageError

        model = self.hypermodel.build(hp)
        name = getattr(self.hypermodel, "name", None) or type(self.hypermodel).__name__
        if not isinstance(model, keras.Model):
            raise UsageError(
                f"{name}'s build(hp) returned {type(model).__name__}, expected a compiled keras.Model; "
                "return the model from build_model(hp)"
            )
        fit_overridden = type(self.hypermodel).fit is not kt.HyperModel.fit  # its fit() may compile
        if not getattr(model, "compiled", True) and not fit_overridden:
            raise UsageError(f"{name}'s build(hp) returned a model that is not compiled; call model.compile(...) in it")
        return model


def populate_space(oracle: kt.Oracle, hypermodel: kt.HyperModel) -> None:
    """Fill the oracle's space as Keras Tuner's tuners do; a build that fails is the user's bug, said in one line."""
    from ktsweep.core.errors import UsageError

    try:
        _SpaceExplorer(oracle, hypermodel)._populate_initial_space()
    except UsageError:
        raise
    except Exception as exc:
        if oracle.get_space().space:
            return  # declared without building (SweepHyperModel): the trials that hit the bug record it
        raise UsageError(
            f"building the model on the default hyperparameters failed ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:300]}); fix the HyperModel's build() (run it once with "
            "keras_tuner.HyperParameters())"
        ) from exc


def keep_state_atomic(oracle: kt.Oracle) -> None:
    """Write the oracle's state files (``oracle.json``, ``trial_*/trial.json``) whole or not at all.

    Keras Tuner writes them in place, so a driver killed mid-write (SIGKILL, the OOM killer) left an
    empty ``oracle.json`` that no resume could read. Local folders only (``os.replace``); a remote
    tuner directory (``gs://``) keeps Keras Tuner's own writes.
    """
    if "://" in oracle._project_dir:
        return

    def write(path: str, state: dict[str, Any]) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp"
        with open(tmp, "w") as fh:
            # dumps, not dump: json.dump runs the pure-Python encoder (one write per token); the state
            # grows with the trials and is written twice per trial, so this is most of the driver's time per trial
            fh.write(json.dumps(state))
        os.replace(tmp, path)

    oracle.save = lambda: write(oracle._get_oracle_fname(), oracle.get_state())  # type: ignore[method-assign]
    oracle._save_trial = lambda trial: write(  # type: ignore[method-assign]
        os.path.join(oracle._get_trial_dir(trial.trial_id), "trial.json"), trial.get_state()
    )


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


def distinct_best_trials(oracle: kt.Oracle, num_trials: int) -> list[kt.engine.trial.Trial]:
    """The best completed trials with distinct hyperparameters, best first: Hyperband continues a
    trial under a new id with the same values, which an ensemble must not count twice."""
    return distinct_trials(best_trials(oracle, len(oracle.trials)), num_trials)


def distinct_trials(trials: list[kt.engine.trial.Trial], num_trials: int) -> list[kt.engine.trial.Trial]:
    """The first ``num_trials`` of ``trials`` with distinct hyperparameters, in their order."""
    chosen: list[kt.engine.trial.Trial] = []
    seen: set[str] = set()
    for trial in trials:
        values = {k: v for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")}
        key = json.dumps(values, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            chosen.append(trial)
        if len(chosen) == num_trials:
            break
    return chosen
