"""The ``scheduler`` group: Ray Tune schedulers that stop weak trials early."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ktsweep.conf.schema.base import at_least, require


@dataclass
class SchedulerConf:
    """``scheduler=none``: every trial trains to its last epoch (or to its strategy's own budget)."""

    kind: str = "none"


@dataclass
class StoppingConf(SchedulerConf):
    """A Ray Tune scheduler that stops weak trials, judged after each epoch on the objective.

    ``max_t`` and ``tuner`` are interpolated from the sweep (``sweep.epochs``, ``tuner._target_``)
    so that this node's own check can compare them.
    """

    grace_period: int = 1  # epochs every trial trains before it can be stopped
    max_t: int = "${sweep.epochs}"  # type: ignore[assignment]
    tuner: str = "${tuner._target_}"

    def check(self) -> None:
        require(
            not self.tuner.endswith("HyperbandOracle"),
            f"scheduler={self.kind} cannot be combined with tuner=hyperband (Hyperband already stops weak "
            "trials by its brackets); use tuner=random, bayesian or grid, or scheduler=none",
        )
        require(
            1 <= self.grace_period <= self.max_t,
            f"scheduler.grace_period={self.grace_period} must be between 1 and sweep.epochs={self.max_t}; "
            "lower it or raise sweep.epochs",
        )


@dataclass
class AshaConf(StoppingConf):
    """Ray Tune's ASHAScheduler (asynchronous successive halving)."""

    kind: str = "asha"
    reduction_factor: float = 3
    brackets: int = 1

    def check(self) -> None:
        super().check()
        at_least("scheduler.reduction_factor", self.reduction_factor, 2)
        at_least("scheduler.brackets", self.brackets, 1)


@dataclass
class MedianConf(StoppingConf):
    """Ray Tune's MedianStoppingRule: stop a trial whose best is worse than the median of the others' running means."""

    kind: str = "median"
    grace_period: int = 3
    min_samples_required: int = 3

    def check(self) -> None:
        super().check()
        at_least("scheduler.min_samples_required", self.min_samples_required, 1)


@dataclass
class PbtConf(SchedulerConf):
    """Population Based Training over the Keras Tuner space (``search/schedulers.py``, ``EpochPBT``).

    The population is the sweep's trials, drawn at random from the space. Every
    ``perturbation_interval`` epochs a trial in the bottom ``quantile_fraction`` copies the weights
    and optimizer state of one in the top fraction (exploit) and perturbs the hyperparameters that
    may change during training (explore): ``mutable``, or by default those declared in ``fit()`` and
    the learning rate. The others (the architecture) are the donor's, so its weights fit.
    ``epochs``, ``tuner`` and ``retrain`` are interpolated from the sweep, for this node's check.
    """

    kind: str = "pbt"
    perturbation_interval: int = 2  # epochs between exploits
    burn_in: int = 0  # epochs before the first exploit (rounded up to the interval)
    quantile_fraction: float = 0.25  # bottom fraction copies the top fraction
    resample_probability: float = 0.25  # a mutable value is drawn afresh instead of perturbed (x0.8 / x1.2)
    mutable: Optional[list[str]] = None  # None: fit()'s hyperparameters and the learning rate
    epochs: int = "${sweep.epochs}"  # type: ignore[assignment]
    tuner: str = "${tuner._target_}"
    retrain: bool = "${sweep.final.retrain}"  # type: ignore[assignment]
    population: Optional[int] = "${sweep.max_trials}"  # type: ignore[assignment]

    def check(self) -> None:
        require(
            not self.tuner.endswith("HyperbandOracle"),
            "scheduler=pbt cannot be combined with tuner=hyperband (Hyperband hands trials on by its own brackets); "
            "use tuner=random, or scheduler=asha for early stopping with Hyperband's idea",
        )
        require(
            self.population is not None,
            "scheduler=pbt trains sweep.max_trials trials as its population; set sweep.max_trials "
            "(tuner=grid has no limit by default)",
        )
        require(
            1 <= self.perturbation_interval < self.epochs,
            f"scheduler.perturbation_interval={self.perturbation_interval} must be between 1 and sweep.epochs-1="
            f"{self.epochs - 1} (an exploit needs epochs left to train); lower it or raise sweep.epochs",
        )
        interval = self.perturbation_interval
        first = max(interval, -(-self.burn_in // interval) * interval)  # the burn-in rounded up to the interval
        require(0 <= self.burn_in and first < self.epochs,
                f"scheduler.burn_in={self.burn_in} leaves no exploit: the first comes after {first} epochs (the burn-in "
                f"rounded up to scheduler.perturbation_interval={interval}), and sweep.epochs={self.epochs}; "
                "lower scheduler.burn_in")
        require(0 < self.quantile_fraction <= 0.5,
                f"scheduler.quantile_fraction must be in (0, 0.5]; got {self.quantile_fraction}")
        require(0 <= self.resample_probability <= 1,
                f"scheduler.resample_probability must be in [0, 1]; got {self.resample_probability}")
        require(self.mutable is None or len(self.mutable) > 0,
                "scheduler.mutable=[] leaves nothing to perturb; name hyperparameters, or leave it unset "
                "(fit()'s hyperparameters and the learning rate)")
        require(
            not self.retrain,
            "scheduler=pbt trains each model under a schedule of hyperparameters, which a retrain cannot replay; "
            "set sweep.final.retrain=false (the best trial's own model is published)",
        )
