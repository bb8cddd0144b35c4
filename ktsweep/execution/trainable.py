"""The Ray Tune trainable: one Keras Tuner trial, run inside a reused (warm) worker.

Keras (on the sweep's backend, ``worker_backend.py``) is imported once per worker process; the dataset and HyperModel
come from Ray's object store (``tune.with_parameters``). Errors are caught
and reported as the trial's result, so a bad trial never kills the warm
worker, and the driver records the message.
"""

from __future__ import annotations

import gc
import json
import math
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ktsweep.core.errors import FatalError, TrialError
from ktsweep.execution.trial_result import (
    BEST_EPOCH_KEY,
    BEST_PREFIX,
    ERROR_KEY,
    HP_KEY,
    STATUS_KEY,
    STOPPED_EARLY_KEY,
    pack,
)

MODEL_FILE = "model.keras"


@dataclass(frozen=True)
class TrialSettings:
    """What every trial of a sweep shares (the resolved sweep config, in plain values)."""

    objective: str
    direction: str
    epochs: int
    batch_size: Optional[int]  # None: not passed to fit() (Keras' default, or the HyperModel's choice)
    cpus_per_trial: float
    terminate_on_nan: bool = True
    early_stopping: bool = False
    patience: int = 3
    restore_best_weights: bool = True
    tensorboard_dir: Optional[str] = None  # one log dir per trial below it, with its hparams
    model_checkpoint_dir: Optional[str] = None  # Keras ModelCheckpoint (best only), one file per trial
    trials_root: Optional[str] = None  # each trial's own folder below it (execution/trial_checkpoint.py)
    trial_checkpoint_every: int = 0  # epochs between a trial's checkpoints; 0: off
    scheduler: bool = False  # a scheduler may ask trials to stop early
    gpus_per_trial: float = 0.0  # below 1: the worker limits its backend to its share of the GPU
    cache_root: Optional[str] = None  # sweep.root: JAX's persistent compilation cache lives below it
    steps_per_epoch: Optional[int] = None  # for an endless pipeline or a generator (fit()'s)
    validation_steps: Optional[int] = None
    pbt_interval: int = 0  # Population Based Training's perturbation interval (execution/pbt.py); 0: off
    model_metrics: tuple[str, ...] = ()  # built-in objectives measured after training (execution/model_metrics.py)
    objectives: tuple[str, ...] = ()  # sweep.objectives' names: each must be a finite number at the best epoch


def worker_facts() -> dict[str, Any]:
    """Where and how the trial ran: recorded on its MLflow run (warm reuse, backend and its limits, node)."""
    import resource

    import ray

    from ktsweep.execution import worker_backend

    return {
        "pid": os.getpid(),
        "node_id": ray.get_runtime_context().get_node_id(),
        **worker_backend.facts(),
        "rss_mb": round(worker_backend.rss_mb(), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "gc_frozen": gc.get_freeze_count(),  # objects the cycle collector no longer walks
        "thread": threading.get_ident(),  # the same for all of a worker's trials (trial_thread.py)
    }


def _report(metrics: dict[str, Any], checkpoint: Any = None) -> None:
    from ray import tune

    tune.report(pack(metrics), checkpoint=checkpoint)


def _epoch_reporter(settings: TrialSettings) -> Any:
    import keras

    sign = 1.0 if settings.direction == "max" else -1.0

    class EpochReporter(keras.callbacks.Callback):
        """Streams each epoch's metrics to Ray and keeps the best epoch's weights in memory."""

        def __init__(self) -> None:
            super().__init__()
            self.best_score = -math.inf
            self.best_epoch: Optional[int] = None
            self.best_logs: dict[str, float] = {}
            self.best_weights: Optional[list[np.ndarray]] = None
            self.epochs_run = 0
            self.diverged: Optional[tuple[int, float]] = None  # (epoch, loss) when the loss went NaN/inf

        def on_epoch_end(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
            logs = {key: float(value) for key, value in (logs or {}).items() if np.isscalar(value)}
            if settings.objective not in logs:
                raise FatalError(
                    f"objective {settings.objective!r} is not among the metrics the model logs "
                    f"({', '.join(sorted(logs))}); set sweep.objective to one of them"
                )
            self.epochs_run += 1
            value = logs[settings.objective]
            if self.diverged is None and not math.isfinite(logs.get("loss", 0.0)):
                self.diverged = (epoch, logs["loss"])
            if self.diverged is None and math.isfinite(value) and sign * value > self.best_score:
                self.best_score = sign * value
                self.best_epoch = epoch
                self.best_logs = logs
                self.best_weights = self.model.get_weights()
            _report({"kind": "epoch", "epoch": epoch, "objective": value, "metrics": logs})

    return EpochReporter()


def _callbacks(settings: TrialSettings, kt_trial_id: str) -> list[Any]:
    """The configured Keras callbacks of one trial (the epoch reporter comes first, separately)."""
    import keras

    callbacks: list[Any] = []
    if settings.terminate_on_nan:
        callbacks.append(keras.callbacks.TerminateOnNaN())
    if settings.early_stopping:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=settings.objective,
                mode=settings.direction,
                patience=settings.patience,
                restore_best_weights=settings.restore_best_weights,
            )
        )
    if settings.model_checkpoint_dir:
        os.makedirs(settings.model_checkpoint_dir, exist_ok=True)
        callbacks.append(
            keras.callbacks.ModelCheckpoint(
                os.path.join(settings.model_checkpoint_dir, f"trial_{kt_trial_id}.keras"),
                monitor=settings.objective,
                mode=settings.direction,
                save_best_only=True,
            )
        )
    return callbacks


def _trial_copies(keras_callbacks: list, kt_trial_id: str) -> list[Any]:
    """The user's callbacks for one trial: fresh copies (as Keras Tuner makes), TensorBoard logging per trial."""
    import copy

    copies = copy.deepcopy(keras_callbacks)
    for callback in copies:
        if type(callback).__name__ == "TensorBoard":
            callback.log_dir = os.path.join(str(callback.log_dir), f"trial_{kt_trial_id}")
    return copies


def _fit_results(results: Any, settings: TrialSettings) -> tuple[dict[str, float], int]:
    """Metrics and best step from what ``HyperModel.fit`` returned (a History, a dict or a number), for a
    ``fit`` that trained without our callbacks; Keras Tuner's own conversion."""
    import keras_tuner as kt
    from keras_tuner.src.engine import tuner_utils

    objective = kt.Objective(settings.objective, settings.direction)
    try:
        metrics = tuner_utils.convert_to_metrics_dict(results, objective)
        step = tuner_utils.get_best_step(results, objective)
    except Exception as exc:  # Keras Tuner's own check of fit()'s return value
        raise FatalError(
            f"HyperModel.fit() returned {type(results).__name__}, from which {settings.objective!r} cannot be read; "
            "return model.fit(...)'s History, a dict of metrics, or a number"
        ) from exc
    if settings.objective not in metrics:
        raise FatalError(
            f"objective {settings.objective!r} is not among the metrics fit() returned ({', '.join(sorted(metrics))}); "
            "set sweep.objective to one of them"
        )
    return {key: float(value) for key, value in metrics.items()}, int(step or 0)


def _tensorboard(root: str, kt_trial_id: str, values: dict[str, Any]) -> Any:
    """TensorBoard logs for this trial, plus its hyperparameters for the HPARAMS tab.

    Keras writes TensorBoard's files with TensorFlow's summary writer on every backend, so under JAX
    or PyTorch this callback (asked for by ``sweep.callbacks.tensorboard``) imports TensorFlow."""
    import keras

    try:
        import tensorflow as tf
        from tensorboard.plugins.hparams import api as hparams
    except ImportError as exc:
        raise FatalError(
            "sweep.callbacks.tensorboard=true needs TensorFlow and TensorBoard to write the logs, also on "
            f"{keras.config.backend()}; pip install tensorflow-cpu tensorboard, or set sweep.callbacks.tensorboard=false"
        ) from exc
    log_dir = os.path.join(root, f"trial_{kt_trial_id}")
    with tf.summary.create_file_writer(log_dir).as_default():
        hparams.hparams({k: v for k, v in values.items() if isinstance(v, (bool, int, float, str))}, trial_id=kt_trial_id)
    return keras.callbacks.TensorBoard(log_dir=log_dir, write_graph=False)


def build_training_state(model: Any, x_row: Any, y_row: Any) -> None:
    """Create the optimizer's and metrics' variables now, before ``fit`` traces its step.

    Without a distribution strategy, Keras (TensorFlow backend) creates them while
    tracing the first train step. Variables born inside a ``tf.function`` make
    TensorFlow trace the step twice, and their initializer graphs outlive
    ``clear_session``: in a reused worker that was about 3 MB more per trial, and
    up to 0.2 s more per ``fit`` (bench/RESULTS.md, table 4). Keras' own pre-build
    (``_symbolic_build``, what ``fit`` runs under a strategy) only needs shapes.
    """
    prebuild = getattr(model, "_symbolic_build", None)
    if prebuild is None or not getattr(model, "compiled", False):
        return
    try:
        prebuild(data_batch=(x_row, y_row, None))
    except Exception:  # inputs or a model Keras cannot pre-build: fit() builds them, as before
        pass


def fresh_session() -> None:
    """Keras' ``clear_session``; the first time in a process, then move what survived it (the
    imports: TensorFlow, Keras, Ray, ~450,000 objects) out of reach of the cycle collector.

    ``clear_session`` runs a full ``gc.collect()``, twice per trial, and a full collection walks
    every object: 0.2-0.3 s each in a worker with TensorFlow loaded, most of a short trial's time
    outside ``fit`` (bench/RESULTS.md, section 2). Frozen right after a collection (so no garbage
    is frozen), the imports are no longer walked: a collection then takes ~10 ms, and what
    trials create is collected as before. (What the first trial holds at that moment, its copy
    of the HyperModel, is frozen with the imports: freed by reference counting, never by the
    collector; once per process.)
    """
    import keras

    keras.backend.clear_session()
    if gc.get_freeze_count() == 0:
        gc.freeze()


def _declared_hp(hp: Any, given: dict[str, Any]) -> Optional[str]:
    """The trial's hyperparameters as JSON if build() or fit() declared new ones (Keras Tuner's
    ``end_trial`` then adds them to the space), else None: Ray Tune keeps every trial's last
    result for the whole sweep, and the space alone is ~1 KB a copy."""
    config = hp.get_config()
    return None if config == given else json.dumps(config)  # JSON: Ray flattens dicts


def _load_parent_weights(model: Any, checkpoint_path: str, x_row: Any) -> None:
    """Hyperband hand-off: continue from the parent trial's saved model (from Ray storage).

    A model without an ``Input`` (``Sequential([Flatten(), ...])``) has no weights until it
    sees data: it is called on one row first, as Keras Tuner rebuilds it from its build config.
    """
    from ray.tune import Checkpoint

    if not model.built:
        model(x_row)
    with Checkpoint(checkpoint_path).as_directory() as directory:
        model.load_weights(os.path.join(directory, MODEL_FILE))


def checkpoint_exists(checkpoint_path: str) -> bool:
    """Whether a trial's saved model is still there: Ray storage can vanish (a /tmp cleaner, another
    ``executor.storage_path``) while the sweep's folder remembers the path."""
    if "://" not in checkpoint_path:
        return os.path.exists(os.path.join(checkpoint_path, MODEL_FILE))
    import pyarrow.fs

    try:
        filesystem, path = pyarrow.fs.FileSystem.from_uri(checkpoint_path)
        return filesystem.get_file_info(f"{path.rstrip('/')}/{MODEL_FILE}").type != pyarrow.fs.FileType.NotFound
    except (OSError, ValueError):  # storage that cannot be reached counts as gone: the model is retrained
        return False


def load_model_from_checkpoint(checkpoint_path: str) -> Any:
    """A trial's saved model, from Ray storage (local or remote), loaded with ``safe_mode``."""
    import keras
    from ray.tune import Checkpoint

    with Checkpoint(checkpoint_path).as_directory() as directory:
        return keras.models.load_model(os.path.join(directory, MODEL_FILE), safe_mode=True)


def run_trial(
    config: dict[str, Any], *, dataset: Any, hypermodel: Any, settings: TrialSettings,
    keras_callbacks: Optional[list] = None,
) -> None:
    """Ray Tune function trainable for one oracle trial: trains on the worker's one trial thread
    (``trial_thread.py``: a new thread per trial left TensorFlow's per-thread state behind)."""
    from ktsweep.execution.trial_thread import trial_thread

    trial_thread().run(
        _run_trial, config, dataset=dataset, hypermodel=hypermodel, settings=settings, keras_callbacks=keras_callbacks,
    )


def _run_trial(
    config: dict[str, Any], *, dataset: Any, hypermodel: Any, settings: TrialSettings,
    keras_callbacks: Optional[list] = None,
) -> None:
    """One trial, start to end. Any error becomes the trial's reported result (the warm worker lives on),
    and the session is cleared whatever happened, so the next trial in this worker starts clean."""
    import keras

    from ktsweep.execution import worker_backend
    from ktsweep.execution.trial_checkpoint import TrialCheckpoint

    worker_backend.prepare(cpus=settings.cpus_per_trial, gpus=settings.gpus_per_trial, cache_root=settings.cache_root)
    fresh_session()
    backend_state = worker_backend.TrialState()
    started = time.time()
    try:
        reporter = _epoch_reporter(settings)
        kt_trial_id = config["kt_trial_id"]
        trial_checkpoint = TrialCheckpoint.for_trial(settings, kt_trial_id, reporter)
        trial = _build_trial(config, hypermodel, dataset, current_hp=trial_checkpoint.saved_hp())
        phases = {"build": time.time() - started}  # where a trial's time goes (bench/trial_profile.py)
        if settings.pbt_interval:
            trial_checkpoint.hp = trial.hp
        initial_epoch = trial_checkpoint.restore(trial.model, _first_epoch(config, trial.values))
        callbacks = _fit_callbacks(settings, kt_trial_id, trial.values, reporter, trial_checkpoint, keras_callbacks)
        results = _fit(trial, hypermodel, dataset, settings, initial_epoch, callbacks)
        while trial_checkpoint.exploit is not None:  # PBT: continue from a stronger trial's state
            trial, initial_epoch = _exploit(trial, trial_checkpoint, hypermodel, dataset, settings)
            results = _fit(trial, hypermodel, dataset, settings, initial_epoch, callbacks)
        phases["fit"] = time.time() - started - phases["build"]
        _judge(results, reporter, trial.model, settings)
        if settings.model_metrics:  # on the model the trial reports: its best epoch's weights
            from ktsweep.execution.model_metrics import measure

            measured = measure(trial.model, dataset.sample(hypermodel, 1)[0], settings.model_metrics)
            reporter.best_logs = {**reporter.best_logs, **measured}
        check_objectives(reporter.best_logs, settings.objectives)
        _save_and_report(trial, reporter, trial_checkpoint, settings, started, phases)
        trial_checkpoint.clear()
    except Exception as exc:  # the trial's failure is data for the driver, not a worker crash
        _report_failure(exc, settings, config["kt_trial_id"], started)
    finally:
        keras.backend.clear_session()
        backend_state.release()


@dataclass(frozen=True)
class _BuiltTrial:
    """What the steps after the build share of one trial."""

    given_hp: dict[str, Any]  # as the oracle sent them: the final result carries only hyperparameters added since
    hp: Any  # keras_tuner.HyperParameters, handed to build() and fit()
    values: dict[str, Any]  # hp.values; Hyperband's tuner/epochs and tuner/initial_epoch among them
    model: Any
    feeds: Any  # ktsweep.data.feeds.Feeds: the splits as fit() takes them


def _build_trial(
    config: dict[str, Any], hypermodel: Any, dataset: Any, *, current_hp: Optional[dict[str, Any]] = None,
) -> _BuiltTrial:
    """The model, ready to fit: its training state built before fit traces its step, and a Hyperband
    trial continuing from its parent's weights (whose missing model fails it before any build).
    Data loaded in the workers is loaded here, once per worker process (``data/pipelines.py``).
    ``current_hp``: a resumed PBT trial's values since its last exploit, in place of its first ones."""
    import keras_tuner as kt

    given_hp = json.loads(config["hp"])
    hp = kt.HyperParameters.from_config(current_hp or given_hp)
    values = hp.values
    if "parent_missing" in config:
        raise TrialError(f"no saved model for parent trial {config['parent_missing']}; it cannot be continued")
    feeds = dataset.feeds()
    model = _build_model(hypermodel, hp)
    x_row, y_row = dataset.sample(hypermodel, 1)
    build_training_state(model, x_row, y_row)
    if "parent_checkpoint" in config:
        _load_parent_weights(model, config["parent_checkpoint"], x_row)
    return _BuiltTrial(given_hp, hp, values, model, feeds)


def _exploit(
    trial: _BuiltTrial, trial_checkpoint: Any, hypermodel: Any, dataset: Any, settings: TrialSettings,
) -> tuple[_BuiltTrial, int]:
    """PBT's exploit and explore, in this worker: the donor's pinned state and hyperparameters, the
    mutable ones perturbed, the model rebuilt with them; its checkpoint saved (a resume continues
    from here) and the exploit reported. Returns the trial to go on with and the epoch to start at."""
    import random

    import keras
    import keras_tuner as kt

    from ktsweep.execution.pbt import explore, mutable_names
    from ktsweep.execution.trial_checkpoint import load_state, read_pin

    request, trial_checkpoint.exploit = trial_checkpoint.exploit, None
    epoch = int(request["epoch"])
    entry: dict[str, Any] = {"epoch": epoch, "donor": request["donor"], "donor_epoch": request["donor_epoch"],
                             "donor_score": request.get("donor_score"), "score": request.get("score")}
    pin = read_pin(settings.trials_root, request["donor"], int(request["donor_epoch"]))
    if pin is None or pin["hp"] is None:  # the donor moved on or finished meanwhile: train on as it was
        entry["skipped"] = "the donor's state at that epoch is gone"
        new_trial = trial
    else:
        hp = kt.HyperParameters.from_config(pin["hp"])
        names = mutable_names(hp.values, mutable=request.get("mutable"), fixed=request.get("fixed", []),
                              space=[definition.name for definition in hp.space])
        before = {name: trial.hp.values.get(name) for name in names}
        explore(hp, names, random.Random(request.get("seed")), float(request.get("resample_probability", 0.25)))
        keras.backend.clear_session()
        model = _build_model(hypermodel, hp)
        x_row, y_row = dataset.sample(hypermodel, 1)
        build_training_state(model, x_row, y_row)
        if not model.built:
            model(x_row)
        try:
            entry["optimizer_state"] = load_state(model, pin["model"], pin["optimizer"], keep_learning_rate=True)
        except ValueError as exc:
            raise FatalError(
                f"an exploit cannot load the donor's weights into the model built with the perturbed values of "
                f"{', '.join(names)} ({' '.join(str(exc).split())[:200]}): one of them changes the model's shape; "
                "leave it out of scheduler.mutable"
            ) from exc
        entry["hp"] = {name: [before[name], hp.values.get(name)] for name in names}
        entry["copied"] = {key: value for key, value in hp.values.items()
                           if key not in names and not key.startswith("tuner/") and trial.hp.values.get(key) != value}
        new_trial = _BuiltTrial(trial.given_hp, hp, hp.values, model, trial.feeds)
        trial_checkpoint.hp = hp
        reporter = trial_checkpoint.reporter  # the trial's best is judged on its new lineage from here
        reporter.best_score, reporter.best_epoch, reporter.best_logs, reporter.best_weights = -math.inf, None, {}, None
        trial_checkpoint.forget_best()  # its file holds the old model's weights (maybe another architecture)
    trial_checkpoint.lineage.append(entry)
    trial_checkpoint.set_model(new_trial.model)
    trial_checkpoint.save(epoch, pin=True)
    score = request.get("score")  # Ray checks every result for the objective: the trial's, at that epoch
    _report({"kind": "exploit", "epoch": epoch, "objective": math.nan if score is None else float(score),
             "pbt": {"lineage": trial_checkpoint.lineage}})
    return new_trial, epoch + 1


def _first_epoch(config: dict[str, Any], values: dict[str, Any]) -> int:
    """Hyperband continues a trial from its parent's last epoch; without the parent's saved model
    (``parent_gone``), the trial trains its hyperparameters from the first epoch."""
    return 0 if "parent_gone" in config else int(values.get("tuner/initial_epoch", 0))


def _build_model(hypermodel: Any, hp: Any) -> Any:
    """``HyperModel.build``; anything but a model is the search space's bug, so every trial would fail: fatal."""
    import keras

    model = hypermodel.build(hp)
    if not isinstance(model, keras.Model):
        raise FatalError(
            f"{type(hypermodel).__name__}.build() returned {type(model).__name__}, expected a keras.Model; "
            "return the compiled model from build()"
        )
    return model


def _fit_callbacks(
    settings: TrialSettings, kt_trial_id: str, values: dict[str, Any], reporter: Any, trial_checkpoint: Any,
    keras_callbacks: Optional[list],
) -> list[Any]:
    """The reporter first; the trial checkpoint last, so it saves what the others did at the epoch's end."""
    callbacks = [reporter, *_callbacks(settings, kt_trial_id)]
    callbacks += _trial_copies(keras_callbacks or [], kt_trial_id)
    if settings.tensorboard_dir:
        callbacks.append(_tensorboard(settings.tensorboard_dir, kt_trial_id, values))
    callbacks.append(trial_checkpoint)
    trial_checkpoint.follow(callbacks)
    return callbacks


def _fit(
    trial: _BuiltTrial, hypermodel: Any, dataset: Any, settings: TrialSettings, initial_epoch: int,
    callbacks: list[Any],
) -> Any:
    """``HyperModel.fit``, so a search space may train its own way; Hyperband's epochs win over the sweep's.
    Called as Keras Tuner calls it: ``fit(hp, model, x, y, ...)`` on arrays, ``fit(hp, model, dataset, ...)``."""
    feeds = trial.feeds
    return hypermodel.fit(
        trial.hp,
        trial.model,
        *fit_inputs(feeds.train, hypermodel),
        validation_data=feeds.val.validation(hypermodel),
        epochs=int(trial.values.get("tuner/epochs", settings.epochs)),
        initial_epoch=initial_epoch,
        callbacks=callbacks,
        verbose=0,
        **fit_options(settings, feeds.train),
    )


def fit_inputs(feed: Any, hypermodel: Any) -> tuple[Any, ...]:
    """``(x, y)`` for arrays, ``(dataset,)`` for a pipeline (which yields its own targets)."""
    x, y = feed.fit_args(hypermodel)
    return (x,) if y is None else (x, y)


def fit_options(settings: Any, feed: Any) -> dict[str, Any]:
    """``batch_size`` for arrays (a pipeline is batched already); the steps an endless pipeline needs."""
    options = {"batch_size": settings.batch_size} if settings.batch_size is not None and not feed.pipeline else {}
    steps = {"steps_per_epoch": settings.steps_per_epoch, "validation_steps": settings.validation_steps}
    return {**options, **{key: value for key, value in steps.items() if value is not None}}


def _judge(results: Any, reporter: Any, model: Any, settings: TrialSettings) -> None:
    """Fail a trial that has no valid result; else leave its best epoch in the reporter and, where the
    reporter saw the epochs, that epoch's weights in the model (the model the trial reports)."""
    if reporter.diverged is not None:
        epoch, loss = reporter.diverged
        raise TrialError(f"loss became {loss} at epoch {epoch}: the trial is invalid (too high a learning rate?)")
    if reporter.epochs_run == 0:  # fit() trained without our callbacks: judge it by what it returned
        reporter.best_logs, reporter.best_epoch = _fit_results(results, settings)
    elif reporter.best_weights is None:
        raise TrialError(f"no epoch gave a finite {settings.objective}")
    else:
        model.set_weights(reporter.best_weights)


def check_objectives(logs: dict[str, Any], objectives: tuple[str, ...]) -> None:
    """Every one of several objectives at the trial's best epoch: a name the model never logs stops the
    sweep (each trial would miss it), a non-finite value fails this trial only."""
    missing = [name for name in objectives if name not in logs]
    if missing:
        raise FatalError(
            f"sweep.objectives names {', '.join(missing)}, which the model does not log (it logs "
            f"{', '.join(sorted(logs))}); fix sweep.objectives or compile the model with that metric"
        )
    invalid = [f"{name}={logs[name]}" for name in objectives if not math.isfinite(float(logs[name]))]
    if invalid:
        raise TrialError(f"objective {', '.join(invalid)} at the best epoch: the trial has no valid result")


def _save_and_report(
    trial: _BuiltTrial, reporter: Any, trial_checkpoint: Any, settings: TrialSettings, started: float,
    phases: dict[str, float],
) -> None:
    """The final result, with the saved model as its Ray checkpoint (Hyperband's hand-off, pull); the
    temporary folder lives until Ray has copied it."""
    from ray.tune import Checkpoint

    with tempfile.TemporaryDirectory(prefix="ktsweep-ckpt-") as directory:
        trial.model.save(os.path.join(directory, MODEL_FILE))
        phases["save"] = time.time() - started - phases["build"] - phases["fit"]
        _report(
            {
                "kind": "final",
                STATUS_KEY: "ok",
                "objective": reporter.best_logs[settings.objective],
                BEST_EPOCH_KEY: reporter.best_epoch,
                "epochs_run": reporter.epochs_run,
                HP_KEY: _declared_hp(trial.hp, trial.given_hp),
                STOPPED_EARLY_KEY: trial_checkpoint.stopped_at,
                "trial_seconds": time.time() - started,
                "worker": worker_facts(),
                "phases": phases,
                **{f"{BEST_PREFIX}{key}": value for key, value in reporter.best_logs.items()},
            },
            checkpoint=Checkpoint.from_directory(directory),
        )


def _report_failure(exc: Exception, settings: TrialSettings, kt_trial_id: str, started: float) -> None:
    """The failure as the trial's final result: a fatal one stops the sweep, a failed one only this trial.
    The driver records the message: ours are written for the user, any other is named by its type."""
    from ktsweep.execution.trial_checkpoint import TrialCheckpoint

    fatal = isinstance(exc, FatalError)
    message = str(exc) if isinstance(exc, (FatalError, TrialError)) else f"{type(exc).__name__}: {exc}"
    TrialCheckpoint.for_trial(settings, kt_trial_id, None).clear()  # a failed trial starts afresh
    _report(
        {
            "kind": "final",
            STATUS_KEY: "fatal" if fatal else "failed",
            ERROR_KEY: " ".join(message.split())[:2000],
            "objective": float("nan"),
            "trial_seconds": time.time() - started,
            "worker": worker_facts(),
        }
    )
