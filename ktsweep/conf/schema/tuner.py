"""The ``tuner`` group: Keras Tuner oracles, built with ``instantiate(_target_)``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from omegaconf import MISSING

from ktsweep.conf.schema.base import at_least, require


@dataclass
class TunerConf:
    _target_: str = MISSING
    seed: Optional[int] = None
    max_trials: Optional[int] = None
    max_retries_per_trial: int = 0
    max_consecutive_failed_trials: int = 3

    def check(self) -> None:
        require(
            self.max_trials is None or self.max_trials >= 1,
            f"tuner.max_trials must be >= 1; got {self.max_trials}",
        )
        at_least("tuner.max_retries_per_trial", self.max_retries_per_trial, 0)
        require(
            self.max_consecutive_failed_trials >= 1,
            "tuner.max_consecutive_failed_trials must be >= 1",
        )


@dataclass
class RandomConf(TunerConf):
    _target_: str = "keras_tuner.oracles.RandomSearchOracle"
    max_trials: Optional[int] = 10


@dataclass
class BayesianConf(TunerConf):
    _target_: str = "keras_tuner.oracles.BayesianOptimizationOracle"
    max_trials: Optional[int] = 10
    num_initial_points: Optional[int] = None
    alpha: float = 1e-4
    beta: float = 2.6

    def check(self) -> None:
        super().check()
        require(self.alpha > 0, f"tuner.alpha must be > 0; got {self.alpha}")
        at_least("tuner.beta", self.beta, 0)
        require(
            self.num_initial_points is None or self.num_initial_points >= 1,
            "tuner.num_initial_points must be >= 1",
        )


@dataclass
class HyperbandConf(TunerConf):
    _target_: str = "keras_tuner.oracles.HyperbandOracle"
    max_trials: Optional[int] = None  # None: run every bracket to the end
    max_epochs: int = 10
    factor: int = 3
    hyperband_iterations: int = 1

    def check(self) -> None:
        super().check()
        at_least("tuner.max_epochs", self.max_epochs, 1)
        at_least("tuner.factor", self.factor, 2)
        at_least("tuner.hyperband_iterations", self.hyperband_iterations, 1)


@dataclass
class GridConf(TunerConf):
    _target_: str = "keras_tuner.oracles.GridSearchOracle"
    max_trials: Optional[int] = None  # None: the whole grid


@dataclass
class NSGA2Conf(TunerConf):
    """Optuna's NSGA-II over the Keras Tuner space, on every objective of ``sweep.objectives``."""

    _target_: str = "ktsweep.search.optuna_oracle.NSGA2Oracle"
    max_trials: Optional[int] = 24
    population_size: int = 8  # random trials first; NSGA-II's generation size
    objectives: Optional[list[str]] = "${sweep.objectives}"  # type: ignore[assignment]  # a copy, for the oracle

    def check(self) -> None:
        super().check()
        at_least("tuner.population_size", self.population_size, 2)
        name = strategy_name(self._target_)
        require(bool(self.objectives) and len(self.objectives or []) >= 2,
                f"tuner={name} searches several objectives; set sweep.objectives=[val_accuracy,params] "
                "(or use tuner=random, bayesian, hyperband or grid for one)")


@dataclass
class MOTPEConf(NSGA2Conf):
    """Optuna's TPE sampler on every objective of ``sweep.objectives`` (the recommended guided search)."""

    _target_: str = "ktsweep.search.optuna_oracle.MOTPEOracle"


STRATEGY_NAMES = {
    "RandomSearchOracle": "random",
    "HyperbandOracle": "hyperband",
    "BayesianOptimizationOracle": "bayesian",
    "GridSearchOracle": "grid",
    "NSGA2Oracle": "nsga2",
    "MOTPEOracle": "motpe",
}


def strategy_name(target: str) -> str:
    """A short name for a tuner ``_target_`` (``keras_tuner.oracles.HyperbandOracle`` -> hyperband)."""
    cls = target.rsplit(".", 1)[-1]
    return STRATEGY_NAMES.get(cls, cls)
