"""A Ray Tune ``Searcher`` that asks a Keras Tuner oracle what to try next.

Keras Tuner keeps the strategy's exact semantics (Hyperband brackets and
hand-off, the Bayesian GP, retries); Ray only sees suggestions and results.
The oracle persists itself on every ``end_trial``, and this searcher keeps
the map from oracle trial to model checkpoint beside it, so a sweep can be
resumed from its directory.
"""

from __future__ import annotations

import json
import math
import os
import threading
from typing import Any, Optional

import keras_tuner as kt
from keras_tuner.src.engine.trial import TrialStatus
from ray.tune.search import Searcher

from ktsweep.execution.trainable import checkpoint_exists
from ktsweep.execution.trial_result import (
    BEST_EPOCH_KEY,
    BEST_PREFIX,
    ERROR_KEY,
    HP_KEY,
    STATUS_KEY,
    STOPPED_EARLY_KEY,  # the final report's keys, read here
    unpack,
)

PARENT_KEY = "tuner/trial_id"


class OracleSearcher(Searcher):
    """``suggest`` -> ``oracle.create_trial``; ``on_trial_complete`` -> ``update_trial`` + ``end_trial``."""

    def __init__(self, oracle: kt.Oracle, *, metric: str = "objective", mode: Optional[str] = None) -> None:
        direction = oracle.objective.direction
        super().__init__(metric=metric, mode=mode or direction)
        self.oracle = oracle
        self.live: dict[str, str] = {}  # Ray trial id -> oracle trial id
        self.checkpoints: dict[str, str] = {}  # oracle trial id -> checkpoint path
        self.fatal_error: Optional[str] = None
        self._lock = threading.Lock()
        self._index_path = os.path.join(oracle._project_dir, CHECKPOINT_INDEX)
        self.checkpoints = read_checkpoint_index(oracle._project_dir)

    # -- Ray Tune Searcher interface -------------------------------------

    def suggest(self, trial_id: str) -> Optional[dict[str, Any]]:
        if self.fatal_error is not None:
            return Searcher.FINISHED
        trial = self.oracle.create_trial(trial_id)
        if trial.status == TrialStatus.IDLE:
            return None  # Hyperband waits for its bracket: ask again later
        if trial.status == TrialStatus.STOPPED:
            return Searcher.FINISHED
        self.live[trial_id] = trial.trial_id
        # The hyperparameters (space and values) as one JSON string, not a nested dict: Ray Tune
        # keeps each trial's config for the whole sweep in three deep copies, which then share
        # one string object (its JSON state still writes the string out each time).
        config: dict[str, Any] = {"kt_trial_id": trial.trial_id, "hp": json.dumps(trial.hyperparameters.get_config())}
        parent = trial.hyperparameters.values.get(PARENT_KEY)
        if parent is not None:
            if parent not in self.checkpoints:
                # The hand-off cannot happen: better a clear failure than a silent fresh start.
                config["parent_missing"] = parent
            elif not checkpoint_exists(self.checkpoints[parent]):
                # Its saved model was there and is gone (Ray storage lost or moved): train from the start.
                config["parent_gone"] = self.checkpoints[parent]
            else:
                config["parent_checkpoint"] = self.checkpoints[parent]
        return config

    def on_trial_complete(
        self, trial_id: str, result: Optional[dict[str, Any]] = None, error: bool = False
    ) -> None:
        kt_id = self.live.pop(trial_id, None)
        if kt_id is None:
            return  # already recorded (callbacks may fire twice on resume)
        trial = self.oracle.trials[kt_id]
        result = unpack(result or {})
        if result.get(HP_KEY):  # as Keras Tuner's end_trial expects: new entries then join the space
            trial.hyperparameters = kt.HyperParameters.from_config(json.loads(result[HP_KEY]))
        status = result.get(STATUS_KEY)
        if error or status != "ok":
            trial.status = TrialStatus.INVALID
            trial.message = result.get(ERROR_KEY) or "the trial's worker process died"
            if status == "fatal":
                trial.status = TrialStatus.FAILED
                self.fatal_error = trial.message
        else:
            metrics = {
                key[len(BEST_PREFIX):]: value
                for key, value in result.items()
                if key.startswith(BEST_PREFIX) and isinstance(value, (int, float))
            }
            # A tuner's list of objectives (Keras Tuner's MultiObjective, its sum the oracle's score): each must be finite.
            names = [o.name for o in getattr(self.oracle.objective, "objectives", None) or [self.oracle.objective]]
            invalid = next((name for name in names if not math.isfinite(metrics.get(name, math.nan))), None)
            if invalid is not None:
                trial.status = TrialStatus.INVALID
                trial.message = f"objective {invalid} is {metrics.get(invalid, math.nan)}"
            else:
                # A trial the scheduler stopped early is a finished trial: the oracle learns from its best epoch.
                self.oracle.update_trial(kt_id, metrics, step=int(result.get(BEST_EPOCH_KEY, 0)))
                trial.status = TrialStatus.COMPLETED
                if result.get(STOPPED_EARLY_KEY) is not None:
                    trial.message = f"stopped early by the scheduler after epoch {result[STOPPED_EARLY_KEY]}"
        try:
            self.oracle.end_trial(trial)
        except RuntimeError as exc:  # Keras Tuner's max_consecutive_failed_trials
            self.fatal_error = " ".join(str(exc).split())
            self.oracle.save()

    def save(self, checkpoint_path: str) -> None:
        self.oracle.save()

    def restore(self, checkpoint_path: str) -> None:
        self.oracle.reload()

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles the searcher with the experiment state; locks do not pickle.
        return {key: value for key, value in self.__dict__.items() if key != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- hooks used by the sweep ------------------------------------------

    def record_checkpoint(self, kt_trial_id: str, path: str) -> None:
        """Remember where a trial's model was saved (Hyperband continues from it). One appended line
        per checkpoint: the cost of a trial does not grow with the number before it."""
        with self._lock:
            self.checkpoints[kt_trial_id] = path
            with open(self._index_path, "a") as fh:
                fh.write(json.dumps({"trial": kt_trial_id, "path": path}) + "\n")


CHECKPOINT_INDEX = "checkpoints.jsonl"  # beside the oracle's state: trial id -> checkpoint, last line wins


def read_checkpoint_index(project_dir: str) -> dict[str, str]:
    """The trial -> checkpoint map of a sweep (a line cut short by a crash is skipped)."""
    path = os.path.join(project_dir, CHECKPOINT_INDEX)
    found: dict[str, str] = {}
    legacy = os.path.join(project_dir, "checkpoints.json")  # sweeps made before the index was appended to
    if os.path.exists(legacy):
        with open(legacy) as fh:
            found.update(json.load(fh))
    if os.path.exists(path):
        with open(path) as fh:
            for line in fh:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                found[entry["trial"]] = entry["path"]
    return found
