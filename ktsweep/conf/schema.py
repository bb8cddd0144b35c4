"""Typed schema of the config tree: every node a dataclass, validated once.

Hydra merges the YAML files of ``conf/`` onto these dataclasses, so an unknown
key or a wrong type fails while composing. Ranges and cross-field rules are
checked by each node's ``check()``, which ``check_tree`` calls once on the
composed, resolved config (``OmegaConf.to_object``) before any training. (Not
``__post_init__``: defaults may hold interpolations that resolve only later.)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

DIRECTIONS = ("max", "min")
SAMPLINGS = ("linear", "log", "reverse_log")


class ConfigError(ValueError):
    """A config value that cannot work; the message says which key and what to use."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _one_of(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    _require(value in allowed, f"{key} must be one of {', '.join(allowed)}; got {key}={value!r}")


def _check_bounds(low: float, high: float, default: Optional[float]) -> Optional[float]:
    """Check a range; return its default moved into the range.

    Narrowing a range (``n_hidden.max=1``) should not also demand a new default:
    the default is a starting point, not a constraint, so it is clamped.
    """
    _require(low <= high, f"range min={low} is above max={high}; swap them")
    return None if default is None else min(max(default, low), high)


# --------------------------------------------------------------------------
# Search-space ranges (used by every HyperModel schema)
# --------------------------------------------------------------------------


@dataclass
class IntRange:
    """An integer hyperparameter: ``hp.Int(name, min, max, step)``."""

    min: int = MISSING
    max: int = MISSING
    step: int = 1
    default: Optional[int] = None

    def check(self) -> None:
        self.default = _check_bounds(self.min, self.max, self.default)
        _require(self.step >= 1, f"step must be >= 1; got step={self.step}")
        _require(
            self.max == self.min or self.step <= self.max - self.min,
            f"step={self.step} is larger than the range {self.min}..{self.max}; use a smaller step",
        )


@dataclass
class FloatRange:
    """A float hyperparameter: ``hp.Float(name, min, max, sampling=...)``."""

    min: float = MISSING
    max: float = MISSING
    sampling: str = "linear"
    default: Optional[float] = None

    def check(self) -> None:
        _one_of("sampling", self.sampling, SAMPLINGS)
        _require(
            math.isfinite(self.min) and math.isfinite(self.max),
            f"range bounds must be finite; got {self.min}..{self.max}",
        )
        self.default = _check_bounds(self.min, self.max, self.default)
        _require(
            self.sampling == "linear" or self.min > 0,
            f"{self.sampling} sampling needs min > 0; got min={self.min} (use sampling=linear or a positive min)",
        )


@dataclass
class Choice:
    """A categorical hyperparameter: ``hp.Choice(name, values)``."""

    values: list[Any] = MISSING
    default: Optional[Any] = None

    def check(self) -> None:
        _require(len(self.values) > 0, "a choice needs at least one value")
        _require(
            len(set(self.values)) == len(self.values), f"choice values repeat: {self.values}"
        )
        if self.default is not None:
            _require(
                self.default in self.values, f"default={self.default!r} is not in {self.values}"
            )


# --------------------------------------------------------------------------
# HyperModels
# --------------------------------------------------------------------------


@dataclass
class MLPSpace:
    """The classic MLP search space (Géron, ch. 10)."""

    n_hidden: IntRange = field(default_factory=lambda: IntRange(min=0, max=8, default=2))
    n_neurons: IntRange = field(default_factory=lambda: IntRange(min=16, max=256))
    learning_rate: FloatRange = field(
        default_factory=lambda: FloatRange(min=1e-4, max=1e-2, sampling="log")
    )
    optimizer: Choice = field(default_factory=lambda: Choice(values=["sgd", "adam"]))


@dataclass
class FitSpace:
    """Hyperparameters of training rather than of the network (Keras Tuner's ``HyperModel.fit``)."""

    normalize: bool = True  # tune a Normalization layer on/off (hp.Boolean)
    batch_size: Choice = field(default_factory=lambda: Choice(values=[16, 32, 64, 128], default=32))


@dataclass
class HyperModelConf:
    """Common to ktsweep's HyperModels: the class and the objective it is usually judged by.

    ``sweep.objective`` / ``sweep.direction`` default to these; a user's own target
    (a ``build_model(hp)`` function or any ``kt.HyperModel``) needs neither.
    """

    _target_: str = MISSING
    objective: Optional[str] = None
    direction: Optional[str] = None

    def check(self) -> None:
        _require(
            self.direction in (None, *DIRECTIONS),
            f"hypermodel.direction must be one of max, min or null; got {self.direction!r}",
        )


LR_DECAYS = ("inverse_time", "cosine")


@dataclass
class MLPConf(HyperModelConf):
    space: MLPSpace = field(default_factory=MLPSpace)
    normalize: bool = False  # a Normalization layer with the training split's statistics
    # > 0: the learning rate decays over lr_decay_steps optimizer steps, which settles the last epochs
    # of a long run; 0: constant. lr_decay: inverse_time (lr / (1 + step / lr_decay_steps), Keras'
    # InverseTimeDecay) or cosine (to 1% of lr at lr_decay_steps, then flat: Keras' CosineDecay).
    lr_decay_steps: int = 0
    lr_decay: str = "inverse_time"

    def check(self) -> None:
        super().check()
        _require(self.lr_decay_steps >= 0, f"hypermodel.lr_decay_steps must be >= 0; got {self.lr_decay_steps}")
        _one_of("hypermodel.lr_decay", self.lr_decay, LR_DECAYS)


@dataclass
class FitTunedMLPConf(MLPConf):
    fit_space: FitSpace = field(default_factory=FitSpace)


@dataclass
class LossWeights:
    """Weights of the wide & deep model's two losses (Géron: 0.9 main, 0.1 auxiliary)."""

    main: float = 0.9
    aux: float = 0.1

    def check(self) -> None:
        _require(self.main > 0, f"loss_weights.main must be > 0; got {self.main}")
        _require(self.aux >= 0, f"loss_weights.aux must be >= 0; got {self.aux}")


@dataclass
class WideDeepConf(MLPConf):
    """Wide & deep: the wide columns skip the deep stack; an auxiliary output regularises the stack.

    Feature indices are columns of the data's feature matrix (checked against the
    data when the model is built).
    """

    wide_features: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    deep_features: list[int] = field(default_factory=lambda: [2, 3, 4, 5, 6, 7])
    loss_weights: LossWeights = field(default_factory=LossWeights)
    normalize: bool = True

    def check(self) -> None:
        super().check()
        for key in ("wide_features", "deep_features"):
            columns = getattr(self, key)
            _require(len(columns) > 0, f"hypermodel.{key} must name at least one feature column")
            _require(min(columns) >= 0, f"hypermodel.{key} holds a negative column index: {columns}")
            _require(len(set(columns)) == len(columns), f"hypermodel.{key} repeats a column: {columns}")


# --------------------------------------------------------------------------
# Tuners: Keras Tuner oracles, built with instantiate(_target_)
# --------------------------------------------------------------------------


@dataclass
class TunerConf:
    _target_: str = MISSING
    seed: Optional[int] = None
    max_trials: Optional[int] = None
    max_retries_per_trial: int = 0
    max_consecutive_failed_trials: int = 3

    def check(self) -> None:
        _require(
            self.max_trials is None or self.max_trials >= 1,
            f"tuner.max_trials must be >= 1; got {self.max_trials}",
        )
        _require(self.max_retries_per_trial >= 0, "tuner.max_retries_per_trial must be >= 0")
        _require(
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
        _require(self.alpha > 0, f"tuner.alpha must be > 0; got {self.alpha}")
        _require(self.beta >= 0, f"tuner.beta must be >= 0; got {self.beta}")
        _require(
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
        _require(self.max_epochs >= 1, f"tuner.max_epochs must be >= 1; got {self.max_epochs}")
        _require(self.factor >= 2, f"tuner.factor must be >= 2; got {self.factor}")
        _require(self.hyperband_iterations >= 1, "tuner.hyperband_iterations must be >= 1")


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


@dataclass
class DataConf:
    """A loader (``_target_``) returning a ``ktsweep.search.datasets.Dataset``."""

    _target_: str = MISSING
    name: str = MISSING
    seed: int = 42


@dataclass
class SplitDataConf(DataConf):
    """Data without a given split: validation and test are carved out, seeded."""

    val_fraction: float = 0.2
    test_fraction: float = 0.2

    def check(self) -> None:
        for key in ("val_fraction", "test_fraction"):
            value = getattr(self, key)
            _require(0.0 <= value < 1.0, f"data.{key} must be in [0, 1); got {value}")
        _require(
            self.val_fraction + self.test_fraction < 1.0,
            "data.val_fraction + data.test_fraction must leave some training data",
        )
        _require(self.val_fraction > 0, "data.val_fraction must be > 0: the objective is measured on it")


def _check_task(task: Optional[str]) -> None:
    _require(
        task in (None, "classification", "regression"),
        f"data.task must be classification, regression or null; got data.task={task!r}",
    )


@dataclass
class DigitsConf(SplitDataConf):
    _target_: str = "ktsweep.search.datasets.load_digits"
    name: str = "digits"


@dataclass
class HousingConf(SplitDataConf):
    _target_: str = "ktsweep.search.datasets.load_california_housing"
    name: str = "california_housing"
    path: Optional[str] = None  # None: the copy bundled with ktsweep (ktsweep/data/)
    one_hot_ocean: bool = False


@dataclass
class TableConf(SplitDataConf):
    """Any CSV or Parquet table."""

    _target_: str = "ktsweep.search.datasets.load_table"
    name: str = "table"
    path: str = MISSING
    target: str = MISSING
    features: Optional[list[str]] = None  # None: every column but the target
    categorical: Optional[list[str]] = None  # None: the non-numeric feature columns
    task: Optional[str] = None  # classification | regression; None: inferred from the target

    def check(self) -> None:
        super().check()
        _check_task(self.task)


@dataclass
class NpzConf(SplitDataConf):
    """Your own arrays in a NumPy ``.npz``: ``x_train``, ``y_train`` and optionally ``x_val``/``y_val``,
    ``x_test``/``y_test`` (missing splits are cut from train with the fractions)."""

    _target_: str = "ktsweep.search.datasets.load_npz"
    name: str = "npz"
    path: str = MISSING
    task: Optional[str] = None  # classification | regression; None: inferred from y

    def check(self) -> None:
        super().check()
        _check_task(self.task)


@dataclass
class FashionConf(DataConf):
    """Keras' Fashion-MNIST: 60k train (the last ``val_size`` for validation), 10k test."""

    _target_: str = "ktsweep.search.datasets.load_fashion_mnist"
    name: str = "fashion_mnist"
    val_size: int = 5000
    cache_dir: Optional[str] = None  # None: $KERAS_HOME or ~/.keras (Keras' own cache)

    def check(self) -> None:
        _require(0 < self.val_size < 60000, f"data.val_size must be in 1..59999; got {self.val_size}")


# --------------------------------------------------------------------------
# Executor (Ray) and tracking (MLflow)
# --------------------------------------------------------------------------


@dataclass
class ExecutorConf:
    """Where and how wide trials run."""

    address: Optional[str] = None  # None: start a local Ray; "auto" or ray://host:10001
    # Where Ray keeps trial checkpoints (Hyperband hand-off, resume). None: the sweep folder,
    # which every node must see on a cluster; else a shared path or s3:// / gs:// URI.
    storage_path: Optional[str] = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0  # fractions share a GPU between trials
    resources_per_trial: dict[str, float] = field(default_factory=dict)  # custom Ray resources, e.g. {big_mem: 1}
    max_concurrent: Optional[int] = None  # None: as many as the CPUs allow
    max_failures: int = 1  # retries of a trial whose worker process died
    log_to_driver: bool = False  # show worker stdout/stderr (TensorFlow's chatter)

    def check(self) -> None:
        _require(self.cpus_per_trial > 0, f"executor.cpus_per_trial must be > 0; got {self.cpus_per_trial}")
        _require(self.gpus_per_trial >= 0, "executor.gpus_per_trial must be >= 0")
        for key, amount in self.resources_per_trial.items():
            _require(amount > 0, f"executor.resources_per_trial.{key} must be > 0; got {amount}")
        _require(
            self.max_concurrent is None or self.max_concurrent >= 1,
            f"executor.max_concurrent must be >= 1; got {self.max_concurrent}",
        )
        _require(self.max_failures >= 0, "executor.max_failures must be >= 0")


@dataclass
class TrackingConf:
    """MLflow: where runs go and the registry name of the best model."""

    uri: str = ""  # "": sqlite file under sweep.root
    experiment: str = "ktsweep"
    registered_model: str = MISSING
    register: bool = True
    promote: str = "if_better"  # always | if_better | never: when `champion` moves to the new model

    def check(self) -> None:
        _one_of("tracking.promote", self.promote, ("always", "if_better", "never"))
        name = self.registered_model
        _require(bool(name.strip()), "tracking.registered_model must not be empty; name the model to register")
        _require(
            "'" not in name,
            f"tracking.registered_model may not contain ' (MLflow's search filters cannot match it); got {name!r}",
        )


# --------------------------------------------------------------------------
# The sweep itself
# --------------------------------------------------------------------------


@dataclass
class EarlyStoppingConf:
    enabled: bool = False
    patience: int = 3
    restore_best_weights: bool = True

    def check(self) -> None:
        _require(self.patience >= 0, f"early_stopping.patience must be >= 0; got {self.patience}")


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


@dataclass
class SweepConf:
    name: str = ""  # "": a fresh name per run; reuse a name to resume that sweep
    root: str = "ktsweep-runs"
    # The metric trials are judged by, as Keras Tuner's ``objective``; by default the HyperModel's own
    # (ktsweep's HyperModels name one), else val_loss. Direction null: inferred as Keras Tuner does.
    objective: Optional[str] = "${oc.select:hypermodel.objective,val_loss}"
    direction: Optional[str] = "${oc.select:hypermodel.direction,null}"
    seed: int = 42
    max_trials: Optional[int] = "${tuner.max_trials}"  # type: ignore[assignment]
    epochs: int = 10
    batch_size: Optional[int] = None  # None: Keras' default (32), or what the HyperModel's fit() chooses
    code_dir: Optional[str] = None  # your own code's folder, importable in the driver and every worker; None: the working folder
    verbose: bool = True
    callbacks: CallbacksConf = field(default_factory=CallbacksConf)
    final: FinalConf = field(default_factory=FinalConf)
    report: bool = True  # an HTML report logged to the sweep's run (report.html)
    # Epochs between a trial's own checkpoints (resume inside a trial); None: 1 when epochs >= 10, else 0 (off).
    trial_checkpoint_every: Optional[int] = None

    def check(self) -> None:
        _require(self.epochs >= 1, f"sweep.epochs must be >= 1; got sweep.epochs={self.epochs}")
        _require(self.batch_size is None or self.batch_size >= 1, f"sweep.batch_size must be >= 1; got {self.batch_size}")
        _require(bool(self.objective), "sweep.objective is empty; name the metric to optimise, e.g. val_accuracy")
        _require(
            self.max_trials is None or self.max_trials >= 1,
            f"sweep.max_trials must be >= 1; got sweep.max_trials={self.max_trials}",
        )
        if self.direction is None:
            self.direction = infer_direction(self.objective)  # type: ignore[arg-type]
        _one_of("sweep.direction", self.direction, DIRECTIONS)
        _require(self.final.ensemble >= 1, f"sweep.final.ensemble must be >= 1 (1: the best trial alone); got {self.final.ensemble}")
        _require(
            self.max_trials is None or self.final.ensemble <= self.max_trials,
            f"sweep.final.ensemble={self.final.ensemble} averages more trials than sweep.max_trials={self.max_trials} "
            "runs; lower sweep.final.ensemble or raise sweep.max_trials",
        )
        _require(
            self.trial_checkpoint_every is None or self.trial_checkpoint_every >= 0,
            f"sweep.trial_checkpoint_every must be >= 0 (0: off); got {self.trial_checkpoint_every}",
        )
        _require(
            self.name == "" or self.name.replace("-", "").replace("_", "").replace(".", "").isalnum(),
            f"sweep.name may hold letters, digits, '-', '_' and '.'; got {self.name!r}",
        )


@dataclass
class Config:
    """The root node. Group nodes are typed by their own schema (see ``register``)."""

    hypermodel: Any = MISSING
    tuner: Any = MISSING
    data: Any = MISSING
    scheduler: Any = MISSING
    executor: ExecutorConf = field(default_factory=ExecutorConf)
    tracking: TrackingConf = field(default_factory=TrackingConf)
    sweep: SweepConf = field(default_factory=SweepConf)


SCHEMAS: dict[str, dict[str, type]] = {
    "hypermodel": {"mlp_schema": MLPConf, "fit_tuned_mlp_schema": FitTunedMLPConf, "wide_deep_schema": WideDeepConf},
    "tuner": {"random_schema": RandomConf, "hyperband_schema": HyperbandConf, "bayesian_schema": BayesianConf},
    "data": {
        "digits_schema": DigitsConf,
        "housing_schema": HousingConf,
        "table_schema": TableConf,
        "npz_schema": NpzConf,
        "fashion_schema": FashionConf,
    },
    "executor": {"executor_schema": ExecutorConf},
    "tracking": {"tracking_schema": TrackingConf},
}


def infer_direction(objective: str) -> str:
    """Keras Tuner's rule (``kt.Objective`` from a metric name), without importing TensorFlow first."""
    name = objective[4:] if objective.startswith("val_") else objective
    name = name[9:] if name.startswith("weighted_") else name
    lowered = name.lower()
    if lowered in ("loss", "crossentropy", "ce") or lowered.endswith(("loss", "error", "crossentropy", "mse", "mae")):
        return "min"
    if lowered in ("acc", "accuracy") or lowered.endswith(("accuracy", "auc", "precision", "recall")):
        return "max"
    from keras_tuner.src.engine.metrics_tracking import infer_metric_direction

    direction = infer_metric_direction(name)
    _require(
        direction is not None,
        f"cannot tell whether {objective!r} should go up or down; set sweep.direction=max or sweep.direction=min",
    )
    return direction  # type: ignore[return-value]


# --------------------------------------------------------------------------
# Early stopping of weak trials (Ray Tune schedulers) and grid search
# --------------------------------------------------------------------------


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
        _require(
            not self.tuner.endswith("HyperbandOracle"),
            f"scheduler={self.kind} cannot be combined with tuner=hyperband (Hyperband already stops weak "
            "trials by its brackets); use tuner=random, bayesian or grid, or scheduler=none",
        )
        _require(
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
        _require(self.reduction_factor >= 2, f"scheduler.reduction_factor must be >= 2; got {self.reduction_factor}")
        _require(self.brackets >= 1, f"scheduler.brackets must be >= 1; got {self.brackets}")


@dataclass
class MedianConf(StoppingConf):
    """Ray Tune's MedianStoppingRule: stop a trial whose best is worse than the median of the others' running means."""

    kind: str = "median"
    grace_period: int = 3
    min_samples_required: int = 3

    def check(self) -> None:
        super().check()
        _require(
            self.min_samples_required >= 1,
            f"scheduler.min_samples_required must be >= 1; got {self.min_samples_required}",
        )


@dataclass
class GridConf(TunerConf):
    _target_: str = "keras_tuner.oracles.GridSearchOracle"
    max_trials: Optional[int] = None  # None: the whole grid


def trial_checkpoint_every(sweep: SweepConf) -> int:
    """Epochs between a trial's checkpoints: the configured value, else 1 for runs of 10 epochs or more."""
    if sweep.trial_checkpoint_every is not None:
        return sweep.trial_checkpoint_every
    return 1 if sweep.epochs >= 10 else 0


SCHEMAS["scheduler"] = {"none_schema": SchedulerConf, "asha_schema": AshaConf, "median_schema": MedianConf}
SCHEMAS["tuner"]["grid_schema"] = GridConf


def check_tree(node: Any, path: str = "") -> None:
    """Run ``check()`` on a config object and every dataclass node below it."""
    if not dataclasses.is_dataclass(node):
        return
    checker = getattr(node, "check", None)
    if checker is not None:
        try:
            checker()
        except ConfigError as exc:
            top = path.split(".")[0]
            raise ConfigError(str(exc) if not top or str(exc).startswith(top) else f"{path}: {exc}") from None
    for item in dataclasses.fields(node):
        check_tree(getattr(node, item.name), f"{path}.{item.name}" if path else item.name)


def register() -> None:
    """Put the schemas in Hydra's ConfigStore; YAML files name them in their defaults.

    They live under ``schema/<group>`` so that ``--help`` lists only real options.
    """
    store = ConfigStore.instance()
    store.store(name="schema", node=Config)
    for group, nodes in SCHEMAS.items():
        for name, node in nodes.items():
            store.store(group=f"schema/{group}", name=name, node=node)
