"""A sweep's name is its identity: a run under an existing name resumes the same search, refuses another
one with the keys that differ, and never loses or doubles what MLflow recorded (docs/DESIGN.md, "Where a
sweep's state lives")."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from test_cli import ktsweep
from test_user_code import digits, project  # noqa: F401 (a fixture)

from ktsweep.core.errors import UsageError

SMALL = ["sweep.max_trials=2", "sweep.epochs=1", "hypermodel.space.n_hidden.max=1", "hypermodel.space.n_neurons.min=8",
         "hypermodel.space.n_neurons.max=16", "sweep.report=false"]


def run(root: Path, *overrides: str, name: str = "Z") -> Any:
    """One sweep in this process (the session's Ray), as ``ktsweep run`` composes it."""
    from omegaconf import OmegaConf

    from ktsweep.conf.compose import compose, validate
    from ktsweep.search.flow import run_sweep

    args = [f"sweep.root={root}", f"sweep.name={name}", *overrides]
    cfg = compose(args)
    return run_sweep(validate(cfg), resolved_yaml=OmegaConf.to_yaml(cfg, resolve=True), overrides=args)


def recorded(root: Path, name: str = "Z") -> dict[str, Any]:
    """What MLflow holds of a sweep: its runs by kind, the trial ids of its trial runs, the registered versions."""
    from mlflow import MlflowClient

    from ktsweep.tracking.records import find_runs, local_uri

    client = MlflowClient(local_uri(str(root)))
    experiment = client.get_experiment_by_name("ktsweep")
    if experiment is None:
        return {"sweep": 0, "trials": [], "versions": 0}
    trials = find_runs(client, experiment.experiment_id, sweep=name, kind="trial")
    return {
        "sweep": len(find_runs(client, experiment.experiment_id, sweep=name, kind="sweep")),
        "trials": sorted(r.data.tags["ktsweep.trial_id"] for r in trials),
        "versions": len(client.search_model_versions("name = 'ktsweep-digits'")),
    }


@pytest.fixture(scope="module")
def first(ray_session: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Sweep Z: 2 trials, finished and published; what MLflow held of it afterwards."""
    root = tmp_path_factory.mktemp("identity")
    outcome = run(root, *SMALL)
    assert outcome.status == "FINISHED" and outcome.completed == 2
    return root, recorded(root)


@pytest.mark.parametrize("change, named", [
    (["hypermodel.space.n_neurons.max=12"], r"hypermodel\.space\.n_neurons\.max: 16 -> 12"),
    (["tuner=bayesian"], r"tuner\._target_: keras_tuner\.oracles\.RandomSearchOracle -> "
                         r"keras_tuner\.oracles\.BayesianOptimizationOracle"),
    (["sweep.epochs=2"], r"sweep\.epochs: 1 -> 2"),
    (["sweep.seed=7"], r"data\.seed: 42 -> 7; sweep\.seed: 42 -> 7; tuner\.seed: 42 -> 7"),
])
def test_another_search_under_the_name_is_refused_with_the_keys(first, change, named) -> None:
    root, before = first
    overrides = [o for o in SMALL if o.split("=")[0] not in {c.split("=")[0] for c in change}] + change
    with pytest.raises(UsageError, match=rf"^sweep Z exists with another search \({named}\); use a new sweep\.name, "
                                         r"`ktsweep resume Z` \(its stored config\), or sweep\.overwrite=true"):
        run(root, *overrides)
    assert recorded(root) == before  # nothing recorded, nothing lost


def test_another_store_is_named_and_nothing_is_written_there(first, tmp_path: Path) -> None:
    root, before = first
    other = tmp_path / "other.db"
    stored, given = re.escape(f"sqlite:///{root}/mlflow.db"), re.escape(f"sqlite:///{other}")
    with pytest.raises(UsageError, match=rf"^sweep Z is recorded in MLflow at {stored} \(experiment ktsweep\), "
                                         rf"not at {given} .*pass tracking\.uri={stored} tracking\.experiment=ktsweep"):
        run(root, *SMALL, f"tracking.uri=sqlite:///{other}")
    assert not other.exists() and recorded(root) == before


def test_settings_that_do_not_change_a_trial_may_differ(first) -> None:
    """Verbosity, the report, concurrency, the final model's options: the same search, resumed (and it had
    nothing left to try: nothing is trained, nothing published again)."""
    root, before = first
    outcome = run(root, *SMALL, "sweep.verbose=false", "sweep.report=true", "executor.max_concurrent=1",
                  "sweep.final.evaluate_test=false")
    assert outcome.status == "FINISHED" and outcome.already_finished
    assert outcome.completed == 2 and outcome.model_version is None and "already published" in outcome.promotion
    assert recorded(root) == before


@pytest.mark.parametrize("damage, detail", [('{"config": {"sweep": ', r"Expecting value: line 1 column 22"),
                                           ('["tuner=random"]', "no search in it")])
def test_a_damaged_search_file_is_one_line_and_nothing_is_lost(first, damage: str, detail: str) -> None:
    root, before = first
    search = root / "sweeps" / "Z" / "search.json"
    kept = search.read_text()
    search.write_text(damage)
    try:
        with pytest.raises(UsageError, match=rf"^{re.escape(str(search))} is not a sweep's search \({detail}.*\): restore "
                                             r"it, or remove it and this run's search becomes the sweep's, or use a new "
                                             r"sweep\.name$"):
            run(root, *SMALL)
        assert recorded(root) == before and search.read_text() == damage  # nothing trained, recorded or rewritten
    finally:
        search.write_text(kept)


def test_a_first_run_that_stopped_before_any_trial_does_not_hold_the_name(ray_session: Any, tmp_path: Path) -> None:
    """Its config is no reference (nothing was tried): the corrected command starts the sweep."""
    with pytest.raises(UsageError, match=r"data file not found"):
        run(tmp_path, *SMALL, "data=california_housing", "hypermodel=mlp_regressor", f"data.path={tmp_path}/nope.csv")
    outcome = run(tmp_path, *SMALL)
    assert outcome.status == "FINISHED" and outcome.completed == 2 and not outcome.already_finished
    assert "data=california_housing" not in json.loads((tmp_path / "sweeps" / "Z" / "overrides.json").read_text())


@pytest.mark.slow
def test_same_search_resumes_says_so_and_records_each_trial_once(ray_session: Any, tmp_path: Path, capfd) -> None:
    run(tmp_path, *SMALL)
    capfd.readouterr()
    more = run(tmp_path, *[o for o in SMALL if not o.startswith("sweep.max_trials")], "sweep.max_trials=3")
    assert "ktsweep: sweep Z exists: resuming, 2 of 3 trials done" in capfd.readouterr().err
    assert more.completed == 3 and not more.already_finished
    after = recorded(tmp_path)
    assert after["sweep"] == 1 and after["trials"] == ["0", "1", "2"]  # one run per trial: none lost, none twice
    assert after["versions"] >= 1  # the first publication is kept (a better trial may add a version)

    again = run(tmp_path, *[o for o in SMALL if not o.startswith("sweep.max_trials")], "sweep.max_trials=3")
    assert again.already_finished and again.model_version is None
    assert recorded(tmp_path) == after  # a finished sweep re-run trains, records and publishes nothing


@pytest.mark.slow
def test_overwrite_sets_the_old_sweep_aside_and_keeps_its_records(ray_session: Any, tmp_path: Path, capfd) -> None:
    run(tmp_path, *SMALL)
    old = recorded(tmp_path)
    capfd.readouterr()
    outcome = run(tmp_path, *SMALL, "hypermodel.space.n_neurons.max=12", "sweep.overwrite=true")
    err = capfd.readouterr().err
    aside = [p.name for p in (tmp_path / "sweeps").iterdir() if p.name.startswith("Z.replaced-")]
    assert len(aside) == 1 and f"sweep Z existed: set aside as {aside[0]} (3 MLflow runs renamed); starting afresh" in err
    assert outcome.status == "FINISHED" and outcome.completed == 2
    kept = recorded(tmp_path, aside[0])
    assert (kept["sweep"], kept["trials"]) == (old["sweep"], old["trials"])  # the old sweep's runs, all of them
    new = recorded(tmp_path)
    assert (new["sweep"], new["trials"]) == (1, ["0", "1"])
    assert (tmp_path / "sweeps" / aside[0] / "oracle" / "oracle.json").exists()
    assert f"sweep.name={aside[0]}" in json.loads((tmp_path / "sweeps" / aside[0] / "overrides.json").read_text())
    stored = json.loads((tmp_path / "sweeps" / "Z" / "search.json").read_text())
    assert stored["config"]["hypermodel"]["space"]["n_neurons"]["max"] == 12
    overrides = json.loads((tmp_path / "sweeps" / "Z" / "overrides.json").read_text())
    assert "sweep.overwrite=true" not in overrides  # `ktsweep resume Z` must not set it aside again


@pytest.mark.slow
def test_lost_checkpoints_are_redone_from_the_hyperparameters(ray_session: Any, tmp_path: Path) -> None:
    """Hyperband's continuation of a trial whose saved model is gone trains from the first epoch, and the
    final model is retrained from the best trial's hyperparameters; the card says so."""
    hyperband = ["tuner=hyperband", "tuner.max_epochs=3", "tuner.factor=3", "sweep.epochs=3", *SMALL[2:]]
    storages = [tmp_path / f"storage-{i}" for i in range(3)]
    run(tmp_path, *hyperband, "tuner.max_trials=3", f"executor.storage_path={storages[0]}")
    shutil.rmtree(storages[0])  # as a /tmp cleaner would
    outcome = run(tmp_path, *hyperband, "tuner.max_trials=4", f"executor.storage_path={storages[1]}")
    assert outcome.status == "FINISHED" and (outcome.completed, outcome.failed) == (4, 0)  # trial 3 continued trial 0-2
    assert recorded(tmp_path)["trials"] == ["0", "1", "2", "3"]

    shutil.rmtree(storages[1])  # now every saved model is gone, and the final model made from one too:
    shutil.rmtree(tmp_path / "sweeps" / "Z" / "final")  # publishing again must retrain the best
    again = run(tmp_path, *hyperband, "tuner.max_trials=4", f"executor.storage_path={storages[2]}",
                "sweep.final.republish=true")
    assert again.already_finished and again.model_version is not None
    assert "saved model gone" in again.final and "retrained from the hyperparameters" in again.final
    assert json.loads((tmp_path / "sweeps" / "Z" / "final" / "final.json").read_text())["retrained"] is True
    assert recorded(tmp_path)["trials"] == ["0", "1", "2", "3"]


@pytest.mark.slow
def test_the_cli_refuses_another_search_or_store_in_one_line_and_says_a_finished_sweep_is_finished(first) -> None:
    root, before = first
    for extra, line in ((["tuner=bayesian"], "ktsweep: error: sweep Z exists with another search (tuner._target_: "),
                        ([f"tracking.uri=sqlite:///{root}/other.db"], "ktsweep: error: sweep Z is recorded in MLflow at ")):
        done = ktsweep("run", f"sweep.root={root}", "sweep.name=Z", *SMALL, *extra, cwd=root)
        assert done.returncode == 2, done.stderr[-2000:]
        assert done.stderr.strip().splitlines()[-1].startswith(line) and "Traceback" not in done.stderr
        assert recorded(root) == before
    again = ktsweep("run", f"sweep.root={root}", "sweep.name=Z", *SMALL, cwd=root)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "ktsweep: sweep Z exists: resuming, 2 of 2 trials done" in again.stderr
    assert "FINISHED already: sweep Z had nothing left to try, so nothing was trained" in " ".join(again.stdout.split())
    assert "version" not in again.stdout and recorded(root) == before  # nothing published again


@pytest.mark.slow
def test_the_python_api_follows_the_tuners_overwrite(ray_session: Any, project: Path, tmp_path: Path) -> None:  # noqa: F811
    """``overwrite=False`` resumes the tuner's project (refused if its search changed), ``overwrite=True``
    starts afresh, the named sweep's old records set aside."""
    import keras_tuner as kt

    import ktsweep
    from ktsweep.core.user_code import add_to_path

    add_to_path(str(project))
    from user_models import build_model

    x, y = digits(600)
    root = tmp_path / "runs"

    def sweep(max_trials: int, epochs: int, overwrite: bool) -> Any:
        tuner = kt.RandomSearch(build_model, objective="val_accuracy", max_trials=max_trials, seed=42,
                                directory=str(tmp_path), project_name="kt", overwrite=overwrite)
        return ktsweep.sweep(tuner, x[:450], y[:450], epochs=epochs, validation_data=(x[450:], y[450:]),
                             root=str(root), name="api", register=False)

    assert sweep(2, 1, overwrite=False).completed == 2
    assert sweep(3, 1, overwrite=False).completed == 3  # the tuner reloaded its project: one more trial
    assert recorded(root, "api")["trials"] == ["0", "1", "2"]
    with pytest.raises(UsageError, match=r"the tuner's project .*/kt holds trials of another search \(sweep\.epochs: "
                                         r"1 -> 2\); create the tuner with overwrite=True"):
        sweep(3, 2, overwrite=False)
    fresh = sweep(2, 2, overwrite=True)
    assert fresh.completed == 2 and recorded(root, "api")["trials"] == ["0", "1"]
    aside = [p.name for p in (root / "sweeps").iterdir() if p.name.startswith("api.replaced-")]
    assert len(aside) == 1 and recorded(root, aside[0])["trials"] == ["0", "1", "2"]  # kept, renamed
