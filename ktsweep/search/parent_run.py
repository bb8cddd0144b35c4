"""The sweep's parent run in MLflow: opened at the start, closed (counted, published) at the end."""

from __future__ import annotations

import os
import time
from typing import Any, Optional

from ktsweep.conf.schema import Config
from ktsweep.core.outcome import SweepOutcome
from ktsweep.registry.publish import TAG_PUBLISHED, git_commit, log_report, publish_final, published_key


def open_sweep_run(
    config: Config, *, name: str, strategy: str, experiment_id: str, resume_run_id: Optional[str],
    sweep_dir: str, dataset: Optional[dict[str, Any]] = None,
) -> str:
    """Start (or, on resume, reopen) the sweep's parent run as MLflow's active run, with its description
    and (``dataset``, from ``ktsweep.tracking.dataset_input``) the sweep's dataset input."""
    import mlflow

    from ktsweep.core.backend import version as backend_version
    from ktsweep.tracking.dataset_input import log_dataset
    from ktsweep.tracking.records import (
        TAG_DIRECTION,
        TAG_KIND,
        TAG_NOTE,
        TAG_OBJECTIVE,
        TAG_STATUS,
        TAG_STRATEGY,
        TAG_SWEEP,
    )

    sweep = config.sweep
    tags = {
        TAG_KIND: "sweep",
        TAG_SWEEP: name,
        TAG_STRATEGY: strategy,
        TAG_OBJECTIVE: sweep.objective,
        TAG_DIRECTION: sweep.direction,
        TAG_STATUS: "running",
        "ktsweep.data": config.data.name,
        "ktsweep.hypermodel": config.hypermodel._target_,
        "ktsweep.backend": config.backend,
        "ktsweep.backend_version": backend_version(config.backend),
        TAG_NOTE: sweep_note(config, name=name, strategy=strategy, sweep_dir=sweep_dir),
    }
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    run = mlflow.start_run(
        run_id=resume_run_id, experiment_id=experiment_id, run_name=None if resume_run_id else name, tags=tags
    )
    if resume_run_id is None:
        mlflow.log_params(
            {
                "strategy": strategy,
                "scheduler": config.scheduler.kind,
                "objective": sweep.objective,
                "direction": sweep.direction,
                "max_trials": sweep.max_trials,
                "epochs": sweep.epochs,
                "batch_size": sweep.batch_size,
                "data": config.data.name,
                "hypermodel": config.hypermodel._target_,
                "seed": sweep.seed,
            }
        )
    if dataset:
        log_dataset(mlflow.MlflowClient(), run.info.run_id, dataset)
    return run.info.run_id


def sweep_note(config: Config, *, name: str, strategy: str, sweep_dir: str, outcome: Optional[SweepOutcome] = None) -> str:
    """The parent run's description in the MLflow UI (markdown): what ran, how it went, the command behind it."""
    import json
    import shlex

    from ktsweep.core.sweep_folder import OVERRIDES_FILE

    sweep = config.sweep
    lines = [f"**ktsweep sweep `{name}`**: {strategy} search of `{config.hypermodel._target_}` on "
             f"`{config.data.name}`, judged by `{sweep.objective}` ({sweep.direction}).", ""]
    if outcome is None:
        lines.append("- Status: running")
    else:
        lines.append(f"- Status: {outcome.status.lower()}; trials: {outcome.completed} completed, {outcome.failed} failed")
        if outcome.best_trial_id is not None:
            lines.append(f"- Best: `{sweep.objective}` = {outcome.best_score:.6g} (trial {outcome.best_trial_id})")
    try:
        with open(os.path.join(sweep_dir, OVERRIDES_FILE)) as handle:
            overrides = [o for o in json.load(handle) if not o.startswith("sweep.name=")]
        lines.append(f"- Command: `{shlex.join(['ktsweep', 'run', *overrides])}`; resume: `ktsweep resume {name}`")
    except (OSError, ValueError):
        pass  # a sweep folder from elsewhere: no command to show
    return "\n".join(lines)[:5000]  # MLflow's limit for a tag is 8000 characters



def finish_sweep(
    config: Config, outcome: SweepOutcome, *, tracking: Any, searcher: Any, client: Any, dataset: Any, hypermodel: Any,
    sweep_dir: str, previous_tags: dict[str, str], started: float,
) -> None:
    """After the trials (finished, failed or interrupted): deliver every trial record, then close the
    sweep in MLflow; if MLflow is gone, nothing is lost and ``outcome.unsynced`` says how to sync."""
    outcome.unsynced = tracking.close()
    outcome.tracking_seconds, outcome.tracking_write_seconds = tracking.seconds_waiting, tracking.seconds_writing
    if outcome.unsynced is None:
        try:
            close_sweep(config, outcome, searcher=searcher, client=client, dataset=dataset, hypermodel=hypermodel,
                        sweep_dir=sweep_dir, previous_tags=previous_tags, started=started)
        except Exception as exc:  # MLflow went away while closing: nothing is lost, sync closes it later
            if store_answers(client):
                raise
            outcome.unsynced = (
                f"MLflow at {outcome.tracking_uri} stopped answering while the sweep was being closed "
                f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); "
                f"run `ktsweep sync {outcome.name}` when it is back"
            )
    if outcome.unsynced is not None:
        count_trials(outcome, searcher, config.sweep)
        outcome.wall_seconds = time.time() - started
        end_active_run_offline()



def store_answers(client: Any) -> bool:
    try:
        client.search_experiments(max_results=1)
        return True
    except Exception:
        return False



def count_trials(outcome: SweepOutcome, searcher: Any, sweep: Any) -> list[Any]:
    """Counts, the front and the best trial into ``outcome``; returns the trials in publishing order."""
    from ktsweep.conf.schema.sweep import objectives_of
    from ktsweep.search.selection import ranked_trials, trial_point

    trials = searcher.oracle.trials.values()
    outcome.completed = sum(t.status == "COMPLETED" for t in trials)
    outcome.failed = sum(t.status in ("FAILED", "INVALID") for t in trials)
    ranked, outcome.pareto_front = ranked_trials(searcher.oracle, sweep)
    if ranked:
        outcome.best_trial_id, outcome.best_score = ranked[0].trial_id, float(ranked[0].score)
        if sweep.objectives:  # the first objective's own value (a tuner's list is scored by Keras Tuner's sum)
            outcome.best_score = trial_point(ranked[0], objectives_of(sweep)).get(sweep.objective, outcome.best_score)
    return ranked



def end_active_run_offline() -> None:
    """Leave MLflow's active-run stack empty even though the store cannot be told (sync ends the run)."""
    import mlflow

    try:
        mlflow.end_run()  # pops the run first, then fails to reach the store
    except Exception:
        pass



def close_sweep(
    config: Config, outcome: SweepOutcome, *, searcher: Any, client: Any, dataset: Any, hypermodel: Any,
    sweep_dir: str, previous_tags: dict[str, str], started: float,
) -> None:
    """Count, publish the best model (unless interrupted or already published), end the parent run."""
    import mlflow

    from ktsweep.conf.schema.tuner import strategy_name
    from ktsweep.search.oracles import distinct_best_trials, distinct_trials
    from ktsweep.tracking.records import TAG_NOTE, TAG_STATUS

    oracle = searcher.oracle
    ranked = count_trials(outcome, searcher, config.sweep)
    if searcher.fatal_error:
        outcome.error = searcher.fatal_error
        if outcome.status == "FINISHED":
            outcome.status = "FAILED"
    if config.sweep.objectives:
        record_front(config.sweep, outcome, ranked)
    best = ranked[:1]
    if best and outcome.status != "KILLED":
        final = config.sweep.final
        if config.sweep.objectives:  # the rule's order (Hyperband's continuations share values: counted once)
            members = distinct_trials(ranked, final.ensemble)
        else:
            members = distinct_best_trials(oracle, final.ensemble) if final.ensemble > 1 else best
        # an ensemble's other members need their checkpoints only when they are not retrained
        members = [t for i, t in enumerate(members) if (final.retrain and i) or searcher.checkpoints.get(t.trial_id)]
        published_before = previous_tags.get(TAG_PUBLISHED) == published_key(members)
        if published_before and not final.republish:  # resumed, nothing better: do not register twice
            outcome.promotion = f"trial {published_key(members)} was already published"
        elif members and members[0] is best[0]:
            publish_final(config, outcome, client=client, dataset=dataset, hypermodel=hypermodel, trials=members,
                          checkpoints=[searcher.checkpoints.get(t.trial_id) for t in members], sweep_dir=sweep_dir)
            mlflow.set_tag(TAG_PUBLISHED, published_key(members))
        mlflow.log_metrics({"best_objective": outcome.best_score})
        mlflow.set_tag("ktsweep.best_trial_id", outcome.best_trial_id)
    mlflow.log_metrics({"trials_completed": outcome.completed, "trials_failed": outcome.failed})
    oracle_file = os.path.join(sweep_dir, "oracle", "oracle.json")
    if os.path.exists(oracle_file):
        mlflow.log_artifact(oracle_file, "oracle")
    outcome.wall_seconds = time.time() - started
    mlflow.log_metric("wall_seconds", outcome.wall_seconds)
    mlflow.set_tag("ktsweep.disk_mb", f"{disk_mb(config, sweep_dir):.1f}")
    if outcome.error:
        mlflow.set_tag("ktsweep.error", outcome.error[:5000])
    mlflow.set_tag(TAG_STATUS, outcome.status.lower())
    mlflow.set_tag(TAG_NOTE, sweep_note(config, name=outcome.name, strategy=strategy_name(config.tuner._target_),
                                        sweep_dir=sweep_dir, outcome=outcome))
    if config.sweep.report and outcome.status != "KILLED":  # Ctrl-C must end in seconds; `ktsweep report` makes it later
        log_report(client, outcome)
    mlflow.end_run(status=outcome.status)



def record_front(sweep: Any, outcome: SweepOutcome, ranked: list[Any]) -> None:
    """The objectives, the rule, the front and the rule's pick, on the sweep's run; one line when no
    trial meets the rule (then nothing is published)."""

    import mlflow

    from ktsweep.tracking.records import TAG_OBJECTIVES, TAG_PARETO_FRONT, TAG_SELECT, json_tag

    if not ranked and outcome.completed:  # said first: the line is the user's even if MLflow fails next
        outcome.promotion = (f"no completed trial meets sweep.select={sweep.select!r}; nothing published "
                             "(run again under the same sweep.name with another sweep.select: nothing trains again)")
    mlflow.set_tags({
        TAG_OBJECTIVES: ",".join(sweep.objectives), TAG_SELECT: sweep.select,
        TAG_PARETO_FRONT: json_tag([entry["trial_id"] for entry in outcome.pareto_front]),
    })


def disk_mb(config: Config, sweep_dir: str) -> float:
    """What the sweep keeps on disk here: its folder, and its Ray storage when that is a local path."""
    from ktsweep.execution.cluster import storage_path

    total = 0
    for folder in {sweep_dir, storage_path(config, sweep_dir)}:
        if "://" in folder:
            continue  # remote storage: its own console says
        for directory, _, files in os.walk(folder):
            for name in files:
                try:
                    total += os.path.getsize(os.path.join(directory, name))
                except OSError:  # removed meanwhile
                    pass
    return total / 2**20
