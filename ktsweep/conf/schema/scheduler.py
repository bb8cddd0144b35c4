"""The ``scheduler`` group: Ray Tune schedulers that stop weak trials early."""

from __future__ import annotations

from dataclasses import dataclass

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
