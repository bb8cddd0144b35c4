"""The sweep's deliverable, in one place: the final model made once, its card, the bundle and MLflow model
logged, the version registered and promoted (``promotion.py``); and the sweep's HTML report."""

from __future__ import annotations

import os
import subprocess
from typing import TYPE_CHECKING, Any, Optional

from ktsweep.conf.schema import Config
from ktsweep.core.digest import file_digest
from ktsweep.core.outcome import SweepOutcome
from ktsweep.core.user_code import code_dir

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from ktsweep.registry.promotion import Publication


TAG_PUBLISHED = "ktsweep.published_trial"
FINAL_RECORD = "final.json"  # beside final/model.keras: which trial it is, how it was made, its digest


REPORT_FILE = "report.html"


def model_card(config: Config, dataset: Any, trial: Any, *, name: str, parent_run_id: str, uri: str) -> dict[str, Any]:
    """Everything a deployer needs to trust a model, stored beside it."""
    from ktsweep.core.backend import version as backend_version
    from ktsweep.registry.bundle import versions

    metrics = {key: float(trial.metrics.get_best_value(key)) for key in trial.metrics.metrics}
    return {
        "hyperparameters": tuned_values(trial),
        "objective": {"name": config.sweep.objective, "direction": config.sweep.direction, "value": float(trial.score)},
        "metrics": metrics,
        "best_epoch": trial.best_step,
        "data": {
            "name": config.data.name,
            "task": dataset.task,
            "input_shape": list(dataset.input_shape),
            "dtype": dataset.dtype,
            "n_classes": dataset.n_classes,
            "feature_names": list(dataset.feature_names),
            "sizes": dataset.sizes(),
            **({"loaded_in": "workers", "source": dataset.source, "digest": dataset.digest, "files": dataset.files}
               if dataset.in_workers else {"loaded_in": "driver"}),
        },
        "lineage": {
            "sweep": name,
            "trial_id": trial.trial_id,
            "parent_run_id": parent_run_id,
            "tracking_uri": uri,
            "git_commit": git_commit(),
            "hypermodel": config.hypermodel._target_,
            "strategy": config.tuner._target_,
        },
        "versions": versions(),
        "backend": {"name": config.backend, "version": backend_version(config.backend)},  # trained on; loads on any
    }


def pbt_lineage(client: Any, experiment_id: str, sweep: str, trial_ids: list[str]) -> dict[str, Any]:
    """Under PBT a model's weights come from the trials it copied: each published trial's exploits
    (epoch, donor, the values before and after), from its MLflow run; its params are its first values."""
    import json

    from ktsweep.tracking.records import TAG_PBT_LINEAGE, find_runs

    lineages = {}
    for trial_id in trial_ids:
        runs = find_runs(client, experiment_id, sweep=sweep, kind="trial", trial_id=trial_id)
        raw = runs[0].data.tags.get(TAG_PBT_LINEAGE) if runs else None
        lineages[trial_id] = json.loads(raw) if raw else []
    return {"exploits": lineages, "note": "hyperparameters are the values at the trial's end; the schedule is here"}


def input_signature(rows: Any) -> Any:
    """What the model takes, as the card states it: per input its shape (batch first, any size) and dtype."""
    import keras
    import numpy as np

    return keras.tree.map_structure(lambda a: {"shape": [None, *np.shape(a)[1:]], "dtype": str(np.asarray(a).dtype)}, rows)


def publish_final(
    config: Config, outcome: SweepOutcome, *, client: Any, dataset: Any, hypermodel: Any, trials: list[Any],
    checkpoints: list[Optional[str]], sweep_dir: str,
) -> None:
    """Retrain and/or test the best trial (or the ensemble of ``trials``, best first) as configured,
    then log, register and promote the model."""
    import mlflow

    from ktsweep.execution.final import FitSettings
    from ktsweep.registry.promotion import log_once

    final = config.sweep.final
    model_dir, result = finalize_once(
        dataset=dataset, hypermodel=hypermodel, trials=trials, checkpoints=checkpoints, retrain=final.retrain,
        settings=FitSettings(config.sweep.batch_size, config.sweep.steps_per_epoch, config.sweep.validation_steps),
        cpus=config.executor.cpus_per_trial, gpus=config.executor.gpus_per_trial,
        cache_root=os.path.abspath(config.sweep.root) if config.executor.compilation_cache else None,
        out_dir=os.path.join(sweep_dir, "final"), code_folder=code_dir(config.sweep.code_dir),
    )
    if final.evaluate_test and result.test_metrics:
        outcome.test_metrics = result.test_metrics
        log_once(client, outcome.parent_run_id, result.test_metrics)
    outcome.final = final_summary(result)
    if len(trials) < final.ensemble:  # too few completed trials with distinct hyperparameters (and a checkpoint)
        outcome.final += f" ({final.ensemble} asked for; only {len(trials)} completed trials could be used)"
    mlflow.set_tag("ktsweep.final", outcome.final)
    card = model_card(config, dataset, trials[0], name=outcome.name, parent_run_id=outcome.parent_run_id,
                      uri=outcome.tracking_uri)
    card["data"]["input_signature"] = input_signature(dataset.sample(hypermodel, 1)[0])
    card["final"] = {"retrained": result.retrained, "epochs": result.epochs, "test_metrics": outcome.test_metrics}
    if result.lost_checkpoints:  # Ray storage was lost: retrained from the hyperparameters instead
        card["final"]["retrained_because_gone"] = result.lost_checkpoints
    if config.sweep.objectives:  # why this trial: the rule, and the trade-offs it was chosen among
        card["selection"] = {"objectives": list(config.sweep.objectives), "rule": config.sweep.select,
                             "front": outcome.pareto_front}
    if config.scheduler.kind == "pbt":
        card["pbt"] = pbt_lineage(client, outcome.experiment_id, outcome.name, [t.trial_id for t in trials])
    if result.members:
        card["final"]["ensemble"] = [
            {**member, "hyperparameters": tuned_values(trial)} for member, trial in zip(result.members, trials)
        ]
    publication = publish_best(
        client,
        run_id=outcome.parent_run_id,
        checkpoint_dir=model_dir,
        example=dataset.sample(hypermodel, 5)[0],
        card=card,
        registered_model=config.tracking.registered_model if config.tracking.register else None,
        promote=config.tracking.promote,
    )
    outcome.model_version = publication.version
    outcome.registered_model = publication.name
    outcome.promoted = publication.promoted
    outcome.promotion = publication.reason


def publish_best(
    client: "MlflowClient",
    *,
    run_id: str,
    checkpoint_dir: str,
    example: Any,
    card: dict[str, Any],
    registered_model: Optional[str],
    promote: str,
) -> "Publication":
    """Log the model under the sweep's (active) run, register it once, and apply the promotion policy.
    A version this run already registered for this very model (a publication cut short) is promoted as it is."""
    from ktsweep.execution.trainable import MODEL_FILE
    from ktsweep.registry import promotion
    from ktsweep.registry.bundle import log_model

    model_file = os.path.join(checkpoint_dir, MODEL_FILE)
    digest = file_digest(model_file)
    version = promotion.find_version(client, registered_model, run_id=run_id, digest=digest) if registered_model else None
    if version is None:
        info = log_model(model_file, example=example, card=card)
        if not registered_model:
            return promotion.Publication(None, None, False, "not registered (tracking.register=false)")
        version = promotion.register_version(client, registered_model, source=info.model_uri, run_id=run_id,
                                             model_id=info.model_id, tags=promotion.version_tags(card, digest, promote))
    return promotion.promote_version(client, registered_model, version, policy=promote, run_id=run_id)


def tuned_values(trial: Any) -> dict[str, Any]:
    """A trial's hyperparameters less Keras Tuner's own ``tuner/*`` bookkeeping."""
    return {k: v for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")}


def final_summary(result: Any) -> str:
    """The sweep run's ``ktsweep.final`` tag: how the published model was made."""
    made = f"retrained for {result.epochs} epochs" if result.retrained else "best trial's model"
    if result.lost_checkpoints:
        made += f" (saved model gone: {', '.join(result.lost_checkpoints)}; retrained from the hyperparameters)"
    if not result.members:
        return made
    how = "each retrained for its best epoch count" if result.retrained else "their best epochs' models"
    return f"ensemble of {len(result.members)} trials ({', '.join(m['trial_id'] for m in result.members)}), {how}"


def published_key(trials: list[Any]) -> str:
    """What ``ktsweep.published_trial`` holds: the best trial's id, or an ensemble's ids, best first."""
    return ",".join(trial.trial_id for trial in trials)


def finalize_once(*, trials: list[Any], retrain: bool, out_dir: str, **kwargs: Any) -> tuple[str, Any]:
    """``finalize``, unless an earlier attempt (cut short while publishing) already made these trials'
    final model: that file is reused as it is, so its digest finds the version it registered, and a
    retrained model is not trained again."""
    import json

    from ktsweep.execution.final import FinalResult, finalize
    from ktsweep.execution.trainable import MODEL_FILE

    record, model = os.path.join(out_dir, FINAL_RECORD), os.path.join(out_dir, MODEL_FILE)
    if os.path.exists(record) and os.path.exists(model):
        with open(record) as fh:
            kept = json.load(fh)
        asked = kept.get("asked", kept["retrained"])  # what was asked, not what was done (a lost checkpoint retrains)
        if (kept["trial_id"], asked, kept["digest"]) == (published_key(trials), retrain, file_digest(model)):
            return out_dir, FinalResult(b"", kept["test_metrics"], kept["retrained"], kept["epochs"], kept.get("members", []),
                                        kept.get("lost_checkpoints", []))
    model_dir, result = finalize(trials=trials, retrain=retrain, out_dir=out_dir, **kwargs)
    with open(record, "w") as fh:
        json.dump({"trial_id": published_key(trials), "asked": retrain, "retrained": result.retrained,
                   "epochs": result.epochs, "test_metrics": result.test_metrics, "members": result.members,
                   "lost_checkpoints": result.lost_checkpoints, "digest": file_digest(model)}, fh)
    return model_dir, result


def git_commit() -> Optional[str]:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def log_report(client: Any, outcome: SweepOutcome) -> None:
    """The HTML report, as an artifact of the sweep's run; a broken chart must not fail the sweep."""
    import mlflow

    from ktsweep.dashboards.report import build_report

    try:
        mlflow.log_text(build_report(client, outcome.experiment_id, outcome.name), REPORT_FILE)
    except Exception as exc:  # plotting trouble is reported, not raised
        mlflow.set_tag("ktsweep.report_error", f"{type(exc).__name__}: {exc}"[:5000])
