"""The ``sweep`` node: objective, budget, callbacks and what happens to the best trial."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ktsweep.conf.schema.base import DIRECTIONS, ConfigError, at_least, one_of, require


@dataclass
class EarlyStoppingConf:
    enabled: bool = False
    patience: int = 3
    restore_best_weights: bool = True

    def check(self) -> None:
        at_least("early_stopping.patience", self.patience, 0)


@dataclass
class CallbacksConf:
    early_stopping: EarlyStoppingConf = field(default_factory=EarlyStoppingConf)
    terminate_on_nan: bool = True
    tensorboard: bool = False  # per-trial logs + hparams under sweeps/NAME/tensorboard/
    model_checkpoint: bool = False  # each trial's best epoch as sweeps/NAME/checkpoints/trial_ID.keras


@dataclass
class FinalConf:
    """What happens to the best hyperparameters once the search is over."""

    retrain: bool = False  # retrain on train + validation for the best epoch count
    evaluate_test: bool = True  # one evaluation on the held-out test split, logged to the sweep
    # > 1: the final model averages the outputs of the best `ensemble` trials' models (each retrained
    # when retrain=true); it is what is tested, logged and registered. 1: the best trial's model alone.
    ensemble: int = 1
    # A sweep publishes its final model once; a later run under its name that trains nothing new does not
    # publish it again unless this is true.
    republish: bool = False


@dataclass
class SweepConf:
    name: str = ""  # "": a fresh name per run; reuse a name to resume that sweep
    root: str = "ktsweep-runs"
    # The metric trials are judged by, as Keras Tuner's ``objective``; by default the HyperModel's own
    # (ktsweep's HyperModels name one), else val_loss. Direction null: inferred as Keras Tuner does.
    objective: Optional[str] = "${oc.select:hypermodel.objective,val_loss}"
    direction: Optional[str] = "${oc.select:hypermodel.direction,null}"
    # Several objectives (a Pareto front): "name" (direction inferred) or "name:min" / "name:max"; the
    # built-in model metrics "params" and "latency_ms" are measured by the worker. The first is the
    # sweep.objective the strategy and a scheduler go by; the published trial is the one `select` picks.
    objectives: Optional[list[str]] = None
    select: str = "knee"  # knee (of the front), or "max|min METRIC [where METRIC <= NUMBER [and ...]]"
    seed: int = 42
    max_trials: Optional[int] = "${tuner.max_trials}"  # type: ignore[assignment]
    epochs: int = 10
    batch_size: Optional[int] = None  # None: Keras' default (32), or what the HyperModel's fit() chooses
    # fit()'s, for data that cannot say its length (an endless tf.data.Dataset, a generator); None: one pass
    steps_per_epoch: Optional[int] = None
    validation_steps: Optional[int] = None
    code_dir: Optional[str] = None  # your own code's folder, importable in the driver and every worker; None: the working folder
    verbose: bool = True
    callbacks: CallbacksConf = field(default_factory=CallbacksConf)
    final: FinalConf = field(default_factory=FinalConf)
    report: bool = True  # an HTML report logged to the sweep's run (report.html)
    # Epochs between a trial's own checkpoints (resume inside a trial); None: 1 when epochs >= 10, else 0 (off).
    trial_checkpoint_every: Optional[int] = None
    # A run under an existing sweep.name resumes that sweep when its search is the same, and stops with the keys
    # that differ otherwise. true: the old sweep's folder is set aside (NAME.replaced-STAMP, its MLflow runs
    # renamed so, nothing deleted) and the sweep starts afresh.
    overwrite: bool = False

    def check(self) -> None:
        require(self.epochs >= 1, f"sweep.epochs must be >= 1; got sweep.epochs={self.epochs}")
        require(self.batch_size is None or self.batch_size >= 1, f"sweep.batch_size must be >= 1; got {self.batch_size}")
        for key in ("steps_per_epoch", "validation_steps"):
            value = getattr(self, key)
            require(value is None or value >= 1, f"sweep.{key} must be >= 1 (or null: one pass over the data); got {value}")
        require(bool(self.objective), "sweep.objective is empty; name the metric to optimise, e.g. val_accuracy")
        if self.objectives is not None:
            self._check_objectives()
        require(
            self.max_trials is None or self.max_trials >= 1,
            f"sweep.max_trials must be >= 1; got sweep.max_trials={self.max_trials}",
        )
        if self.direction is None:
            self.direction = infer_direction(self.objective)  # type: ignore[arg-type]
        one_of("sweep.direction", self.direction, DIRECTIONS)
        require(self.final.ensemble >= 1, f"sweep.final.ensemble must be >= 1 (1: the best trial alone); got {self.final.ensemble}")
        require(
            self.max_trials is None or self.final.ensemble <= self.max_trials,
            f"sweep.final.ensemble={self.final.ensemble} averages more trials than sweep.max_trials={self.max_trials} "
            "runs; lower sweep.final.ensemble or raise sweep.max_trials",
        )
        require(
            self.trial_checkpoint_every is None or self.trial_checkpoint_every >= 0,
            f"sweep.trial_checkpoint_every must be >= 0 (0: off); got {self.trial_checkpoint_every}",
        )
        require(
            self.name == "" or self.name.replace("-", "").replace("_", "").replace(".", "").isalnum(),
            f"sweep.name may hold letters, digits, '-', '_' and '.'; got {self.name!r}",
        )


    def _check_objectives(self) -> None:
        """Each entry becomes "name:direction"; the first is the sweep's objective; the rule must read."""
        from ktsweep.core.pareto import parse_selection

        entries = [str(entry) for entry in self.objectives or []]
        require(len(entries) >= 2, f"sweep.objectives needs two or more metrics (one is sweep.objective); got {entries}")
        normalised = []
        for entry in entries:
            name, _, direction = entry.partition(":")
            if not direction:
                try:
                    direction = infer_direction(name)
                except ConfigError:
                    require(False, f"cannot tell whether {name!r} in sweep.objectives should go up or down; "
                                   f"write {name}:max or {name}:min")
            one_of(f"the direction of {name} in sweep.objectives", direction, DIRECTIONS)
            normalised.append(f"{name}:{direction}")
        names = [entry.partition(":")[0] for entry in normalised]
        require(len(set(names)) == len(names), f"sweep.objectives names a metric twice: {names}")
        require(names[0] not in ("params", "latency_ms"),
                f"sweep.objectives starts with {names[0]}, which is measured after training, but the first objective "
                "is the one each epoch is judged by; put a metric the model logs first, e.g. [val_accuracy,{names[0]}]")
        self.objectives = normalised
        self.objective, self.direction = names[0], normalised[0].partition(":")[2]
        try:
            rule = parse_selection(self.select)
        except ValueError as exc:
            require(False, f"sweep.select: {exc}")
        unknown = [name for name in rule.names if name not in names]
        require(not unknown, f"sweep.select={self.select!r} names {', '.join(unknown)}, which sweep.objectives "
                             f"does not ({', '.join(names)}); add it there or change the rule")


def objectives_of(sweep: SweepConf) -> list:
    """The validated ``sweep.objectives`` as ``core.pareto.Objective``s (empty: one objective)."""
    from ktsweep.core.pareto import parse_objectives

    return parse_objectives(sweep.objectives or [])


def infer_direction(objective: str) -> str:
    """Keras Tuner's rule (``kt.Objective`` from a metric name), without importing TensorFlow first."""
    name = objective[4:] if objective.startswith("val_") else objective
    name = name[9:] if name.startswith("weighted_") else name
    lowered = name.lower()
    if lowered in ("loss", "crossentropy", "ce", "params", "latency_ms") or lowered.endswith(
            ("loss", "error", "crossentropy", "mse", "mae")):
        return "min"
    if lowered in ("acc", "accuracy") or lowered.endswith(("accuracy", "auc", "precision", "recall")):
        return "max"
    from keras_tuner.src.engine.metrics_tracking import infer_metric_direction

    direction = infer_metric_direction(name)
    require(
        direction is not None,
        f"cannot tell whether {objective!r} should go up or down; set sweep.direction=max or sweep.direction=min",
    )
    return direction  # type: ignore[return-value]


def trial_checkpoint_every(sweep: SweepConf) -> int:
    """Epochs between a trial's checkpoints: the configured value, else 1 for runs of 10 epochs or more."""
    if sweep.trial_checkpoint_every is not None:
        return sweep.trial_checkpoint_every
    return 1 if sweep.epochs >= 10 else 0
