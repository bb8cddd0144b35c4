"""Beyond one machine, on loopback: a two-node Ray cluster runs a sweep, and takes one as a Ray job."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from servers import CLUSTER_ENV, RayCluster, ray_cluster
from test_cli import TINY, ktsweep


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    with ray_cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


def cluster_ktsweep(*args: str, cwd: Path) -> Any:
    return ktsweep(*args, cwd=cwd, env=CLUSTER_ENV)


def trial_runs(root: Path, sweep: str) -> list[Any]:
    from mlflow import MlflowClient

    from ktsweep.tracking.records import find_runs, local_uri

    client = MlflowClient(local_uri(str(root)))
    experiment = client.get_experiment_by_name("ktsweep").experiment_id
    return find_runs(client, experiment, sweep=sweep, kind="trial")


@pytest.mark.slow
def test_hyperband_on_two_nodes_hands_weights_across_nodes(cluster: RayCluster, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from ktsweep.tracking.records import TAG_TRIAL, local_uri

    name = "two-nodes"
    done = cluster_ktsweep(
        "run", "tuner=hyperband", "sweep.epochs=9", "hypermodel.space.n_hidden.min=1", "hypermodel.space.n_hidden.max=1",
        "hypermodel.space.n_neurons.min=32", "hypermodel.space.n_neurons.max=32", "hypermodel.space.optimizer.values=[adam]",
        "hypermodel.space.learning_rate.min=2e-3", "hypermodel.space.learning_rate.max=3e-3",
        f"executor.address={cluster.address}", f"executor.storage_path={tmp_path / 'shared'}",
        f"sweep.name={name}", "tracking.register=false", cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs = {r.data.tags[TAG_TRIAL]: r for r in trial_runs(tmp_path / "ktsweep-runs", name)}
    nodes = {r.data.tags["ktsweep.worker.node_id"] for r in runs.values()}
    assert len(nodes) == 2, nodes  # trials ran on both nodes
    assert any((tmp_path / "shared" / name).rglob("model.keras"))  # checkpoints went to executor.storage_path

    client = MlflowClient(local_uri(str(tmp_path / "ktsweep-runs")))

    def losses(run: Any) -> list[float]:
        history = client.get_metric_history(run.info.run_id, "val_loss")
        return [m.value for m in sorted(history, key=lambda m: m.step)]

    continued = [r for r in runs.values() if r.data.params.get("tuner/trial_id") not in (None, "None")]
    across = 0
    for child in continued:
        parent = runs[child.data.params["tuner/trial_id"]]
        # Restored, not restarted: the first epoch starts near where the parent stopped, far below
        # where the parent started (a fresh Adam may lose a little at first: 0.555 -> 0.574 once).
        first = losses(child)[0]
        assert first < losses(parent)[-1] * 1.25 and first < losses(parent)[0] * 0.85, (losses(parent), losses(child))
        across += child.data.tags["ktsweep.worker.node_id"] != parent.data.tags["ktsweep.worker.node_id"]
    assert across >= 1, "no continued trial landed on the other node than its parent"


@pytest.mark.slow
def test_submit_status_logs_stop(cluster: RayCluster, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    bad = cluster_ktsweep("submit", "sweep.epochs=-1", "--address", cluster.dashboard, cwd=tmp_path)
    assert bad.returncode == 2 and "sweep.epochs must be >= 1" in bad.stderr  # checked before submitting

    done = cluster_ktsweep("submit", *TINY, "sweep.max_trials=2", f"sweep.root={root}", "sweep.name=submitted",
                           "tracking.register=false", "--address", cluster.dashboard, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("submitted sweep submitted as Ray job ")
    job_id = done.stdout.split("Ray job ")[1].split()[0]

    deadline = time.time() + 300
    while True:
        status = cluster_ktsweep("status", job_id, "--address", cluster.dashboard, cwd=tmp_path)
        assert status.returncode == 0, status.stderr
        if "SUCCEEDED" in status.stdout or "FAILED" in status.stdout:
            break
        assert time.time() < deadline, status.stdout
        time.sleep(2)
    logs = cluster_ktsweep("logs", job_id, "--address", cluster.dashboard, cwd=tmp_path)
    assert "SUCCEEDED" in status.stdout, logs.stdout[-3000:]
    assert "FINISHED" in logs.stdout and "2 completed" in logs.stdout
    submitted = trial_runs(root, "submitted")
    assert len(submitted) == 2  # the job's trials are in MLflow
    # the job's driver and workers ran the backend chosen where it was submitted (the job's backend= override)
    assert {run.data.tags["ktsweep.worker.backend"] for run in submitted} == {"tensorflow"}

    follow = cluster_ktsweep("logs", job_id, "--follow", "--address", cluster.dashboard, cwd=tmp_path)
    assert follow.returncode == 0 and "2 completed" in follow.stdout  # ends when the job has ended
    stopped = cluster_ktsweep("stop", job_id, "--address", cluster.dashboard, cwd=tmp_path)
    assert stopped.returncode == 0 and "already finished" in stopped.stdout
    unknown = cluster_ktsweep("status", "raysubmit_nope", "--address", cluster.dashboard, cwd=tmp_path)
    assert unknown.returncode == 2 and "no Ray job 'raysubmit_nope'" in unknown.stderr
