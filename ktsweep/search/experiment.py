"""The Ray Tune experiment of one sweep attempt: Tune's ``Tuner`` over the oracle searcher, with the
scheduler, the callbacks and the trainable's settings, all read from the validated config."""

from __future__ import annotations

import os
from typing import Any, Optional

from ktsweep.conf.schema import Config, trial_checkpoint_every
from ktsweep.conf.schema.sweep import objectives_of
from ktsweep.core.pareto import MODEL_METRICS
from ktsweep.core.sweep_folder import next_attempt
from ktsweep.core.user_code import WithCodeDir, code_dir
from ktsweep.execution.cluster import max_concurrent, storage_path
from ktsweep.execution.trial_checkpoint import TRIALS_FOLDER


def make_tuner(
    config: Config, searcher: Any, *, dataset: Any, hypermodel: Any, sweep_dir: str, callbacks: list,
    keras_callbacks: Optional[list] = None, pbt_fixed: Optional[list[str]] = None,
) -> Any:
    """The Ray Tune experiment: the oracle searcher, warm reused actors, our callbacks, one attempt dir.

    ``keras_callbacks`` (the Python API's ``callbacks=``) run in every trial, copied per trial as
    Keras Tuner does. The HyperModel and callbacks may be the user's own code: they travel with
    the code folder (``WithCodeDir``). A scheduler stops weak trials (``scheduler=asha|median``) or has
    them copy strong ones (``scheduler=pbt``; ``pbt_fixed``: ``build_names``)."""
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from ktsweep.execution.trainable import TrialSettings, run_trial
    from ktsweep.search.schedulers import make_scheduler
    from ktsweep.search.tune_callbacks import JUDGED, CheckpointRecorder, FatalStop, SlimFinishedTrials

    sweep = config.sweep
    trials_root = f"{storage_path(config, sweep_dir).rstrip('/')}/{TRIALS_FOLDER}"
    pbt = config.scheduler.kind == "pbt"
    scheduler = make_scheduler(
        config.scheduler, trials_root=trials_root, objective=sweep.objective, mode=sweep.direction, seed=sweep.seed,
        fixed=pbt_fixed,
    )
    settings = TrialSettings(
        objective=sweep.objective,
        direction=sweep.direction,
        epochs=sweep.epochs,
        batch_size=sweep.batch_size,
        cpus_per_trial=config.executor.cpus_per_trial,
        terminate_on_nan=sweep.callbacks.terminate_on_nan,
        early_stopping=sweep.callbacks.early_stopping.enabled,
        patience=sweep.callbacks.early_stopping.patience,
        restore_best_weights=sweep.callbacks.early_stopping.restore_best_weights,
        tensorboard_dir=os.path.join(sweep_dir, "tensorboard") if sweep.callbacks.tensorboard else None,
        model_checkpoint_dir=os.path.join(sweep_dir, "checkpoints") if sweep.callbacks.model_checkpoint else None,
        trials_root=trials_root,
        trial_checkpoint_every=trial_checkpoint_every(sweep),
        scheduler=scheduler is not None,
        gpus_per_trial=config.executor.gpus_per_trial,
        cache_root=os.path.abspath(sweep.root) if config.executor.compilation_cache else None,
        steps_per_epoch=sweep.steps_per_epoch,
        validation_steps=sweep.validation_steps,
        pbt_interval=config.scheduler.perturbation_interval if pbt else 0,
        model_metrics=tuple(o.name for o in objectives_of(sweep) if o.name in MODEL_METRICS),
        objectives=tuple(o.name for o in objectives_of(sweep)),
    )
    executor = config.executor
    trainable = tune.with_resources(
        tune.with_parameters(
            run_trial, dataset=dataset, settings=settings,
            hypermodel=WithCodeDir(hypermodel, code_dir(sweep.code_dir)),
            keras_callbacks=WithCodeDir(list(keras_callbacks or []), code_dir(sweep.code_dir)),
        ),
        {"cpu": executor.cpus_per_trial, "gpu": executor.gpus_per_trial, **executor.resources_per_trial},
    )
    limit = max_concurrent(config)
    if pbt:
        say_population(limit, sweep.max_trials, executor.cpus_per_trial)
    attempt = next_attempt(sweep_dir)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=limit),
            metric=JUDGED,
            mode=sweep.direction,
            scheduler=scheduler,
            num_samples=-1,
            reuse_actors=True,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=f"ray-{attempt}",
            storage_path=storage_path(config, sweep_dir),
            callbacks=[CheckpointRecorder(searcher), *callbacks, SlimFinishedTrials()],
            stop=FatalStop(searcher),
            failure_config=tune.FailureConfig(max_failures=config.executor.max_failures),
            verbose=0,
        ),
    )


PBT_SPACE_FILE = "pbt_space.json"


def say_population(limit: int, population: Optional[int], cpus_per_trial: float) -> None:
    """One line when the population cannot train together: as in Ray Tune's asynchronous PBT, the
    trials beyond the limit start as others finish, and are judged against fewer peers."""
    from ktsweep.search.interrupts import say

    if population is not None and limit < population:
        cpus = limit * cpus_per_trial
        say(f"scheduler=pbt: {limit} of the population of {population} train at once, the others start as "
            f"those finish; to train it together: executor.max_concurrent={population} "
            f"executor.cpus_per_trial={cpus / population:g}")


def build_names(oracle: Any, hypermodel: Any, mutable: Optional[list[str]], sweep_dir: str) -> list[str]:
    """The hyperparameters ``build()`` declares (the oracle's space before any trial; kept in the sweep's
    folder, since finished trials add ``fit()``'s to it): PBT copies them and perturbs the rest.
    A ``scheduler.mutable`` name outside the space is refused here when ``fit()`` can declare no more."""
    import json

    import keras_tuner as kt

    from ktsweep.core.errors import UsageError

    path = os.path.join(sweep_dir, PBT_SPACE_FILE)
    if os.path.exists(path):
        with open(path) as fh:
            names = json.load(fh)
    else:
        names = [hp.name for hp in oracle.get_space().space]
        with open(path, "w") as fh:
            json.dump(names, fh)
    own_fit = type(hypermodel).fit is not kt.HyperModel.fit
    missing = [name for name in mutable or [] if name not in names]
    if missing and not own_fit:
        raise UsageError(
            f"scheduler.mutable names {', '.join(missing)}, which the search space does not declare "
            f"(it has {', '.join(names)}); fix scheduler.mutable"
        )
    return names


def trial_name(trial: Any) -> str:
    """Ray's name for a trial: the oracle's trial id (module-level, so Ray stores it by reference
    in every trial's state, not as a pickled lambda: 1.3 KB per trial and per experiment save)."""
    return f"trial_{trial.config['kt_trial_id']}"


def trial_dirname(trial: Any) -> str:
    """A trial's folder: the oracle's trial id, then Ray's (a retried oracle trial gets a new one)."""
    return f"trial_{trial.config['kt_trial_id']}_{trial.trial_id}"
