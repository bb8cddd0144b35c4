"""Guided multi-objective strategies: Keras Tuner oracles that ask one of Optuna's multi-objective samplers
for each trial's values over the Keras Tuner space, and tell it every objective of the trial.

Keras Tuner's own oracles take one score (a list of objectives is summed into one since
keras-tuner#641); these keep them apart. ``tuner=motpe`` is Optuna's TPE sampler on several objectives
(MOTPE: a density model of the trials on the better fronts against the rest), ``tuner=nsga2`` its
NSGA-II (each generation bred from the fronts so far). MOTPE is the one the README recommends: it
found better fronts than random search and NSGA-II at 24 trials (``bench/pareto.py``). As oracles they
are Keras Tuner ``Oracle``s like the others: Ray Tune's searcher, resume, MLflow and the Pareto front
work as for random search. The sampler's memory is Optuna's in-memory study, rebuilt from the oracle's
finished trials on resume.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import keras_tuner as kt
from keras_tuner.src.engine import trial as trial_module

from ktsweep.conf.schema.sweep import infer_direction
from ktsweep.core.errors import UsageError
from ktsweep.core.pareto import Objective

GENERATION_KEY = "NSGAIISampler:generation"  # Optuna's system attribute for a trial's generation


def optuna_distribution(hp: Any) -> Any:
    """A Keras Tuner hyperparameter as an Optuna distribution (None for a Fixed one)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    kind = type(hp).__name__
    if kind == "Fixed":
        return None
    if kind == "Boolean":
        return CategoricalDistribution([False, True])
    if kind == "Choice":
        return CategoricalDistribution(list(hp.values))
    log = hp.sampling == "log"
    if kind == "Int":
        return IntDistribution(hp.min_value, hp.max_value, step=1 if log else (hp.step or 1), log=log)
    if kind == "Float":
        step = hp.step if hp.step and not log else None
        return FloatDistribution(hp.min_value, hp.max_value, step=step, log=log)
    raise UsageError(f"Optuna cannot sample the hyperparameter {hp.name!r} of type {kind}; use tuner=random")


class OptunaOracle(kt.Oracle):
    """Keras Tuner's Oracle interface over one of Optuna's multi-objective samplers (``SAMPLER``); the
    first ``population_size`` trials are random (NSGA-II: its generation size)."""

    SAMPLER = "nsga2"

    def __init__(
        self, objective: Any = None, objectives: Optional[list[str]] = None, max_trials: Optional[int] = 24,
        population_size: int = 8, seed: Optional[int] = None, hyperparameters: Any = None,
        allow_new_entries: bool = True, tune_new_entries: bool = True, max_retries_per_trial: int = 0,
        max_consecutive_failed_trials: int = 3,
    ) -> None:
        super().__init__(objective=objective, max_trials=max_trials, hyperparameters=hyperparameters,
                         allow_new_entries=allow_new_entries, tune_new_entries=tune_new_entries, seed=seed,
                         max_retries_per_trial=max_retries_per_trial,
                         max_consecutive_failed_trials=max_consecutive_failed_trials)
        self.objectives = [Objective(name, direction or infer_direction(name))
                           for name, _, direction in (str(entry).partition(":") for entry in objectives or [])]
        if len(self.objectives) < 2:
            raise UsageError(f"tuner={self.SAMPLER} needs two or more objectives; "
                             "set sweep.objectives=[val_accuracy,params]")
        self.population_size = population_size
        self._study: Any = None
        self._asked: dict[str, Any] = {}  # Keras Tuner trial id -> the Optuna trial it was asked as
        self._known: set[str] = set()  # Keras Tuner trial ids the study holds as finished

    def _distributions(self) -> dict[str, Any]:
        found = {hp.name: optuna_distribution(hp) for hp in self.hyperparameters.space}
        return {name: dist for name, dist in found.items() if dist is not None}

    def _optuna(self) -> Any:
        """The in-memory study, rebuilt from the finished trials the first time (a resumed sweep)."""
        if self._study is not None:
            return self._study
        import optuna

        logging.getLogger("optuna").setLevel(logging.WARNING)  # one line per trial otherwise
        if self.SAMPLER == "motpe":  # TPE on several objectives: the first population_size trials at random
            sampler = optuna.samplers.TPESampler(n_startup_trials=self.population_size, multivariate=True,
                                                 seed=self.seed)
        else:
            sampler = optuna.samplers.NSGAIISampler(population_size=self.population_size, seed=self.seed)
        self._study = optuna.create_study(
            directions=["maximize" if o.direction == "max" else "minimize" for o in self.objectives], sampler=sampler)
        finished = sorted((t for t in self.trials.values() if t.status in (
            trial_module.TrialStatus.COMPLETED, trial_module.TrialStatus.INVALID, trial_module.TrialStatus.FAILED)),
            key=lambda t: t.trial_id)
        for trial in finished:
            self._add_finished(trial)
        return self._study

    def _add_finished(self, trial: Any) -> None:
        """A trial the study never asked (finished before a resume, or retried after one), as Optuna's
        own finished trial; its generation counted from the completed trials before it, as NSGA-II counts."""
        import optuna

        distributions = self._distributions()
        params = {name: trial.hyperparameters.values[name] for name in distributions
                  if name in trial.hyperparameters.values}
        values = self._values(trial)
        completed = sum(t.state == optuna.trial.TrialState.COMPLETE for t in self._study.get_trials(deepcopy=False))
        self._study.add_trial(optuna.trial.create_trial(
            params=params, distributions={name: distributions[name] for name in params},
            values=values, state=optuna.trial.TrialState.COMPLETE if values else optuna.trial.TrialState.FAIL,
            system_attrs={GENERATION_KEY: completed // self.population_size},
        ))
        self._known.add(trial.trial_id)

    def _values(self, trial: Any) -> Optional[list[float]]:
        """The trial's objectives, as NSGA-II is told them; None when it did not complete with all of them."""
        if trial.status != trial_module.TrialStatus.COMPLETED:
            return None
        if not all(trial.metrics.exists(o.name) for o in self.objectives):
            return None
        return [float(trial.metrics.get_last_value(o.name)) for o in self.objectives]

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        asked = self._optuna().ask(self._distributions())
        self._asked[trial_id] = asked
        hp = self.hyperparameters.copy()
        values = {}
        for definition in hp.space:
            if hp.is_active(definition):
                values[definition.name] = asked.params.get(definition.name, hp.values.get(definition.name))
                hp.values[definition.name] = values[definition.name]
        return {"status": trial_module.TrialStatus.RUNNING, "values": values}

    def end_trial(self, trial: Any) -> None:
        super().end_trial(trial)
        asked = self._asked.pop(trial.trial_id, None)
        if asked is None:  # asked before a resume and retried after it
            if trial.trial_id not in self._known:
                self._optuna()
                if trial.trial_id not in self._known:  # the rebuild did not already take it
                    self._add_finished(trial)
            return
        import optuna

        values = self._values(trial)
        if values is None:
            self._study.tell(asked, state=optuna.trial.TrialState.FAIL)
        else:
            self._study.tell(asked, values=values)
        self._known.add(trial.trial_id)

    def get_state(self) -> dict[str, Any]:
        return {**super().get_state(), "population_size": self.population_size}

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.population_size = state.get("population_size", self.population_size)
        self._study, self._asked, self._known = None, {}, set()

    def __getstate__(self) -> dict[str, Any]:
        # Ray Tune pickles the searcher, and so this oracle, with its experiment state: the study
        # (its storage holds locks) is rebuilt from the trials instead.
        return {**self.__dict__, "_study": None, "_asked": {}, "_known": set()}


class NSGA2Oracle(OptunaOracle):
    """``tuner=nsga2``: Optuna's ``NSGAIISampler``, ``population_size`` trials per generation."""

    SAMPLER = "nsga2"


class MOTPEOracle(OptunaOracle):
    """``tuner=motpe``: Optuna's ``TPESampler`` (multivariate) on several objectives."""

    SAMPLER = "motpe"
