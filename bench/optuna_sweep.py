"""One sweep with Optuna, two trials at a time in threads of one process (``n_jobs=2``).

The third contender of ``bench/sweep_speedup.py``: the same HyperModel class and
search space, data split, epochs and batch size as ``ktsweep run`` with the given
overrides. The space is not rewritten for Optuna: the HyperModel's own ``build(hp)``
(and ``fit(hp, ...)``) runs with a Keras Tuner ``HyperParameters`` whose new
hyperparameters are answered by the Optuna trial's ``suggest_*`` (define-by-run,
so conditional scopes work). Samplers: RandomSampler for RandomSearch, TPE for
BayesianOptimization and for Hyperband (Optuna's default sampler, which its docs
pair with ``HyperbandPruner``). Prints one JSON line.
    python bench/optuna_sweep.py tuner=random sweep.max_trials=12 sweep.epochs=5

Needs the bench extra: ``pip install -c constraints.txt -e ".[bench]"``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

N_JOBS = 2  # trials at a time, as ktsweep runs them on this 2-core machine


def suggest(trial: Any, hp: Any) -> Any:
    """A value for Keras Tuner hyperparameter ``hp`` from ``trial.suggest_*``, with Keras Tuner's distribution."""
    from keras_tuner.engine import hyperparameters as kinds

    if isinstance(hp, kinds.Fixed):
        return hp.value
    if isinstance(hp, kinds.Boolean):
        return trial.suggest_categorical(hp.name, [False, True])
    if isinstance(hp, kinds.Choice):
        return trial.suggest_categorical(hp.name, list(hp.values))
    if hp.sampling == "linear" or (hp.sampling == "log" and hp.step is None):
        log = hp.sampling == "log"
        if isinstance(hp, kinds.Int):
            return trial.suggest_int(hp.name, hp.min_value, hp.max_value, step=hp.step or 1, log=log)
        return trial.suggest_float(hp.name, hp.min_value, hp.max_value, step=hp.step, log=log)
    # reverse_log, or log with a multiplicative step: Optuna has no such distribution, so sample
    # Keras Tuner's own unit-interval coordinate and map it the way its oracles do.
    return hp.prob_to_value(trial.suggest_float(f"{hp.name}/prob", 0.0, 1.0))


def trial_hyperparameters(trial: Any) -> Any:
    """A ``kt.HyperParameters`` that asks ``trial`` for each active hyperparameter the first time it is declared."""
    import keras_tuner as kt

    class TrialHyperParameters(kt.HyperParameters):
        def _register(self, hyperparameter: Any, overwrite: bool = False) -> Any:
            if self.is_active(hyperparameter) and hyperparameter.name not in self.values:
                self.values[hyperparameter.name] = suggest(trial, hyperparameter)
            return super()._register(hyperparameter, overwrite)

    return TrialHyperParameters()


def epoch_reporter(trial: Any, objective: str) -> Any:
    """Reports the objective after each epoch, at step = epochs trained (Keras Tuner's Hyperband counts so:
    rungs at 1, 3, 9 epochs); stops the fit when the pruner says so.

    Not optuna-integration's ``TFKerasPruningCallback``: it reports the 0-based epoch index, which would
    put every rung one epoch later than Keras Tuner's.
    """
    import keras

    class EpochReporter(keras.callbacks.Callback):
        pruned = False

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            trial.report(float(logs[objective]), epoch + 1)
            if trial.should_prune():
                self.pruned = self.model.stop_training = True

    return EpochReporter()


def hyperband_configurations(tuner_conf: Any) -> int:
    """How many models Keras Tuner's Hyperband starts (its round-0 sizes over all brackets and iterations):
    Optuna's trial count, so both try as many configurations (17 for max_epochs 9, factor 3; Keras Tuner
    counts 23 trials, as it counts each promotion to a longer rung as a trial of its own)."""
    import keras_tuner as kt

    oracle = kt.oracles.HyperbandOracle(
        objective="loss", max_epochs=tuner_conf.max_epochs, factor=tuner_conf.factor
    )
    brackets = oracle._get_num_brackets()
    return tuner_conf.hyperband_iterations * sum(oracle._get_size(b, 0) for b in range(brackets))


def main(overrides: list[str]) -> None:
    started = time.perf_counter()
    if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
        import tensorflow as tf

        # The whole machine to the process, as plain keras-tuner has it and as ktsweep splits it (one thread
        # per trial, two trials): TensorFlow's pools are per process, so the two trial threads share them.
        tf.config.threading.set_intra_op_parallelism_threads(os.cpu_count() or 1)
        tf.config.threading.set_inter_op_parallelism_threads(os.cpu_count() or 1)
    import keras_tuner as kt
    import optuna
    from cases import search_inputs
    from keras_tuner.src.engine import tuner_utils

    config, dataset, hypermodel = search_inputs(overrides)
    sweep, tuner = config.sweep, config.tuner
    kind = tuner._target_.rsplit(".", 1)[-1]
    objective = kt.Objective(sweep.objective, sweep.direction)
    pruner: Any = optuna.pruners.NopPruner()
    if kind == "RandomSearchOracle":
        sampler, n_trials, epochs = optuna.samplers.RandomSampler(seed=tuner.seed), sweep.max_trials, sweep.epochs
    elif kind == "BayesianOptimizationOracle":
        sampler, n_trials, epochs = optuna.samplers.TPESampler(seed=tuner.seed), sweep.max_trials, sweep.epochs
    elif kind == "HyperbandOracle":
        sampler, epochs = optuna.samplers.TPESampler(seed=tuner.seed), tuner.max_epochs
        n_trials = hyperband_configurations(tuner)
        pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=tuner.factor)
    else:
        raise SystemExit(f"optuna_sweep.py: no Optuna counterpart for tuner {tuner._target_}; use random, bayesian or hyperband")
    epochs_trained = []

    def run(trial: Any) -> float:
        # No keras.backend.clear_session() (Keras Tuner's habit before each build): it replaces the
        # thread-local state of every thread, so it would pull the state from under the other trial.
        hp = trial_hyperparameters(trial)
        model = hypermodel.build(hp)
        reporter = epoch_reporter(trial, sweep.objective)
        history = hypermodel.fit(
            hp, model, dataset.x_train, dataset.y_train, validation_data=(dataset.x_val, dataset.y_val),
            epochs=epochs, batch_size=sweep.batch_size, verbose=0, callbacks=[reporter],
        )
        epochs_trained.append(len(history.epoch))
        if reporter.pruned:
            raise optuna.TrialPruned()
        return tuner_utils.convert_to_metrics_dict(history, objective)[sweep.objective]  # its best epoch, as Keras Tuner scores

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction = "maximize" if sweep.direction == "max" else "minimize"
    study = optuna.create_study(direction=direction, sampler=sampler, pruner=pruner)
    search_started = time.perf_counter()
    study.optimize(run, n_trials=n_trials, n_jobs=N_JOBS)
    search_seconds = time.perf_counter() - search_started
    states = [t.state for t in study.trials]
    print(json.dumps({
        "seconds_inside": time.perf_counter() - started, "search_seconds": search_seconds,
        "best": float(study.best_value), "trials": len(study.trials),
        "pruned": states.count(optuna.trial.TrialState.PRUNED), "epochs": sum(epochs_trained),
    }))


if __name__ == "__main__":
    main(sys.argv[1:])
