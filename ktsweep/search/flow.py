"""One sweep, end to end: data -> oracle -> Ray Tune -> MLflow -> registered best model."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from ktsweep.conf.schema import Config
from ktsweep.search.inputs import SweepInputs, load_inputs
from ktsweep.search.interrupts import closing_after_ctrl_c
from ktsweep.core.outcome import SweepOutcome
from ktsweep.execution.cluster import start_ray
from ktsweep.search.experiment import make_tuner
from ktsweep.core.sweep_folder import save_overrides, sweep_name
from ktsweep.search.parent_run import finish_sweep, open_sweep_run
from ktsweep.execution.warm_workers import shut_down_early, started_early, wait_started

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # we log to MLflow, not JSON/CSV/TBX
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Ctrl-C must stop the sweep at once and leave running trials to be retried on resume;
# Tune's own handler would instead finish them as failed trials.
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no network calls from the driver
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # tqdm bars would bury the sweep's lines
# Tune's result analysis looks for the JSON/CSV files we chose not to write; its warnings are noise.
logging.getLogger("ray.tune").setLevel(logging.ERROR)


def run_sweep(
    config: Config, *, resolved_yaml: str, overrides: Optional[list[str]] = None, inputs: Optional[SweepInputs] = None,
    end_process_on_third_ctrl_c: bool = False,
) -> SweepOutcome:
    """Run (or resume, when ``sweep.name`` exists) one sweep; return what it produced.

    ``inputs`` (the Python API) brings the data, HyperModel and oracle as objects; else the config names them.
    ``end_process_on_third_ctrl_c``: the CLI's; in-process callers (a notebook) get a KeyboardInterrupt.
    """
    if started_early():
        wait_started()  # before this thread imports Ray Tune: see warm_ray.start_early
    import mlflow

    from ktsweep.tracking.dataset_input import describe_dataset
    from ktsweep.search.searcher import OracleSearcher
    from ktsweep.conf.schema.tuner import strategy_name
    from ktsweep.search.oracles import best_trials, build_oracle, keep_state_atomic, planned_trials, populate_space
    from ktsweep.search.progress import SweepProgress
    from ktsweep.tracking.records import connect, find_runs, local_uri
    from ktsweep.tracking.mlflow_callback import MlflowTracking

    started = time.time()
    sweep = config.sweep
    root = os.path.abspath(sweep.root)
    strategy = strategy_name(config.tuner._target_)
    name = sweep_name(config, strategy)
    sweep_dir = os.path.join(root, "sweeps", name)
    os.makedirs(sweep_dir, exist_ok=True)
    save_overrides(sweep_dir, [o for o in (overrides or []) if not o.startswith("sweep.name=")] + [f"sweep.name={name}"])
    uri = config.tracking.uri or local_uri(root)

    # Opening MLflow (its import; a new store is a copy of a cached empty one, store_template.py)
    # overlaps loading the data and starting Ray.
    with ThreadPoolExecutor(1, thread_name_prefix="ktsweep-connect") as pool:
        store = pool.submit(connect, uri, config.tracking.experiment, root=root)
        inputs = inputs or load_inputs(config)
        dataset, hypermodel, oracle = inputs.dataset, inputs.hypermodel, inputs.oracle
        if oracle is None:
            oracle = build_oracle(
                config.tuner,
                objective=sweep.objective,
                direction=sweep.direction,
                max_trials=sweep.max_trials,
                hypermodel=hypermodel,
                directory=os.path.join(sweep_dir, "oracle"),
            )
        else:
            keep_state_atomic(oracle)
            populate_space(oracle, hypermodel)
        inputs.oracle = oracle  # the caller (Python API) reads the results from it
        searcher = OracleSearcher(oracle)
        if store.done():
            store.result()  # an unreachable store raises here, before Ray starts
        start_ray(config)  # last of the set-up: bad config or data fail before Ray starts
        client, experiment_id = store.result()

    previous = find_runs(client, experiment_id, sweep=name, kind="sweep")
    previous_tags = previous[0].data.tags if previous else {}
    dataset_input = describe_dataset(config.data, dataset)
    parent_run_id = open_sweep_run(
        config, name=name, strategy=strategy, experiment_id=experiment_id,
        resume_run_id=previous[0].info.run_id if previous else None, sweep_dir=sweep_dir, dataset=dataset_input,
    )
    mlflow.log_text(resolved_yaml, "config.yaml")
    mlflow.log_dict(dataset.sizes(), "data_sizes.json")

    best = best_trials(oracle, 1)
    tracking = MlflowTracking(client, experiment_id=experiment_id, parent_run_id=parent_run_id, sweep=name, oracle=oracle,
                              sweep_dir=sweep_dir, best_score=float(best[0].score) if best else None,
                              dataset=dataset_input)
    progress = SweepProgress(total=planned_trials(oracle), objective=sweep.objective, direction=sweep.direction)
    tuner = make_tuner(config, searcher, dataset=dataset, hypermodel=hypermodel, sweep_dir=sweep_dir,
                       callbacks=[tracking, progress], keras_callbacks=inputs.keras_callbacks)
    outcome = SweepOutcome(
        name=name, status="FINISHED", tracking_uri=uri, experiment_id=experiment_id, parent_run_id=parent_run_id,
        objective=sweep.objective, direction=sweep.direction, completed=0, failed=0, wall_seconds=0.0,
        tracking_seconds=0.0,
    )
    interrupt: Optional[KeyboardInterrupt] = None
    try:
        tuner.fit()
        shut_down_early(more_ray_work=config.sweep.final.retrain)  # overlaps closing (CLI only)
    except BaseException as exc:  # Ctrl-C, or Ray itself failing: record it, then let it propagate
        outcome.status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        outcome.error = outcome.error or f"{type(exc).__name__}: {exc}"
        interrupt = exc if isinstance(exc, KeyboardInterrupt) else None
        raise
    finally:
        with (closing_after_ctrl_c(tracking.writer, sweep_dir=sweep_dir, end_process=end_process_on_third_ctrl_c)
              if interrupt else contextlib.nullcontext()):
            progress.close()
            finish_sweep(config, outcome, tracking=tracking, searcher=searcher, client=client, dataset=dataset,
                         hypermodel=hypermodel, sweep_dir=sweep_dir, previous_tags=previous_tags, started=started)
        kept = tracking.writer.kept_notice()
        if interrupt is not None and kept:
            interrupt.add_note(kept)  # the CLI prints it with its "interrupted" line
    return outcome
