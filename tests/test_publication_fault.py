"""MLflow goes away after the best model's version is created, before the sweep is marked published:
``ktsweep sync`` finishes that version instead of registering a second one."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from servers import mlflow_server
from test_cli import TINY, ktsweep, user_env

FAULTY = str(Path(__file__).with_name("faulty_ktsweep.py"))
MODEL = "published-once"
ONE_TRIAL = ["sweep.max_trials=1", "sweep.epochs=1", "hypermodel.space.n_hidden.max=1", "hypermodel.space.n_neurons.max=16"]


def test_publication_cut_short_on_sqlite_is_finished_by_sync(ray_session: Any, store_root: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that fails right after creating the version (MLflow gone from there on), then sync."""
    from mlflow import MlflowClient
    from omegaconf import OmegaConf

    from ktsweep.conf.compose import compose, validate
    from ktsweep.registry import promotion as registry
    from ktsweep.registry.promotion import TAG_DECISION
    from ktsweep.search import parent_run as sweep_run
    from ktsweep.search.flow import run_sweep
    from ktsweep.tracking.records import local_uri
    from ktsweep.tracking.sync import sync_journal

    register = registry.register_version

    def register_then_fail(*args: Any, **kwargs: Any) -> Any:
        register(*args, **kwargs)
        monkeypatch.setattr(sweep_run, "store_answers", lambda client: False)
        raise ConnectionError("MLflow stopped answering")

    def run(name: str) -> Any:
        args = [f"sweep.root={store_root}", f"sweep.name={name}", "tracking.registered_model=cut-short-sqlite", *ONE_TRIAL]
        cfg = compose(args)
        return run_sweep(validate(cfg), resolved_yaml=OmegaConf.to_yaml(cfg, resolve=True), overrides=args)

    monkeypatch.setattr(registry, "register_version", register_then_fail)
    first = run("cut-short-sqlite")
    assert first.unsynced and "`ktsweep sync cut-short-sqlite`" in first.unsynced
    monkeypatch.undo()

    assert sync_journal(str(store_root), "cut-short-sqlite").needs_close  # what `ktsweep sync` then resumes
    again = run("cut-short-sqlite")
    client = MlflowClient(local_uri(str(store_root)))
    versions = client.search_model_versions("name = 'cut-short-sqlite'")
    assert len(versions) == 1 and again.model_version == str(versions[0].version) and again.promoted
    assert versions[0].run_id == first.parent_run_id and versions[0].tags[TAG_DECISION] == "promoted"
    assert client.get_model_version_by_alias("cut-short-sqlite", "champion").version == versions[0].version


@pytest.mark.slow
def test_server_killed_between_registering_and_published_then_sync(tmp_path: Path) -> None:
    from ktsweep.registry.promotion import TAG_DECISION, TAG_DIGEST
    from ktsweep.registry.publish import TAG_PUBLISHED
    from ktsweep.tracking.records import TAG_STATUS, find_runs

    name = "cut-short"
    with mlflow_server(tmp_path / "server") as server:
        args = ["run", *TINY, "sweep.max_trials=2", f"sweep.name={name}", "tracking=server",
                f"tracking.uri={server.uri}", f"tracking.registered_model={MODEL}"]
        env = {**user_env(), "KTSWEEP_FAULT_KILL_AFTER_REGISTERING": str(server.proc.pid)}
        done = subprocess.run([sys.executable, FAULTY, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 3, done.stderr[-3000:]  # MLflow gone while closing: nothing lost, sync says how
        assert f"run `ktsweep sync {name}` when it is back" in done.stderr.strip().splitlines()[-1]

        server.stop()  # reaps the killed server
        server.start()  # the same store, the one version in it
        client = server.client()
        first = client.search_model_versions(f"name = '{MODEL}'")
        assert len(first) == 1 and first[0].tags[TAG_DECISION] == "pending"  # created, never decided

        synced = ktsweep("sync", name, cwd=tmp_path)
        assert synced.returncode == 0, synced.stderr[-3000:]
        assert "closing the sweep" in synced.stdout

        experiment_id = client.get_experiment_by_name("ktsweep").experiment_id
        parent = find_runs(client, experiment_id, sweep=name, kind="sweep")[0]
        versions = client.search_model_versions(f"name = '{MODEL}'")
        assert [v.version for v in versions] == [first[0].version]  # exactly one version, the first
        version = versions[0]
        assert version.run_id == parent.info.run_id and version.tags[TAG_DECISION] == "promoted"
        assert client.get_model_version_by_alias(MODEL, "champion").version == version.version
        assert parent.info.status == "FINISHED" and parent.data.tags[TAG_STATUS] == "finished"
        best = parent.data.tags["ktsweep.best_trial_id"]
        assert parent.data.tags[TAG_PUBLISHED] == best == version.tags["ktsweep.trial_id"]
        assert parent.data.tags["ktsweep.promotion"] == "promoted"
        assert [m.value for m in client.get_metric_history(parent.info.run_id, "candidate_score")] == \
            [float(version.tags["ktsweep.score"])]  # the decision logged once

        # The card and the model behind the alias are the first attempt's, and verify.
        pulled = ktsweep("pull", f"{MODEL}@champion", "--tracking-uri", server.uri, "--out", "model", cwd=tmp_path)
        assert pulled.returncode == 0, pulled.stderr[-3000:]
        assert "verified on 5 examples" in pulled.stdout
        card = json.loads((tmp_path / "model" / "model.json").read_text())
        assert card["lineage"]["sweep"] == name and card["lineage"]["trial_id"] == best
        assert card["lineage"]["parent_run_id"] == parent.info.run_id
        digest = hashlib.sha256((tmp_path / "model" / "model.keras").read_bytes()).hexdigest()
        assert digest == version.tags[TAG_DIGEST]
