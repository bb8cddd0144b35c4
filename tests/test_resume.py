"""A sweep whose driver is killed mid-way finishes with ``ktsweep resume`` and loses nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from test_cli import KTSWEEP, TINY, ktsweep, user_env


def completed_trials(oracle_dir: Path) -> list[str]:
    done = []
    for trial_file in oracle_dir.glob("trial_*/trial.json"):
        trial = json.loads(trial_file.read_text())
        if trial["status"] == "COMPLETED":
            done.append(trial["trial_id"])
    return done


@pytest.mark.slow
def test_driver_killed_then_resumed(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from ktsweep.tracking.records import find_runs, local_uri

    name = "crashy"
    args = ["run", "tuner=hyperband", "sweep.epochs=9", *TINY[1:], f"sweep.name={name}", "tracking.register=false"]
    proc = subprocess.Popen([KTSWEEP, *args], cwd=tmp_path, env=user_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    oracle_dir = tmp_path / "ktsweep-runs" / "sweeps" / name / "oracle"
    deadline = time.time() + 300
    while len(completed_trials(oracle_dir)) < 4:
        assert proc.poll() is None, "the sweep ended before it could be killed"
        assert time.time() < deadline, "no progress within 300 s"
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything it started
    proc.wait()
    before = set(completed_trials(oracle_dir))

    client = MlflowClient(local_uri(str(tmp_path / "ktsweep-runs")))
    experiment = client.get_experiment_by_name("ktsweep").experiment_id
    first_attempt = {r.data.tags["ktsweep.trial_id"]: r.data.tags["ray.trial_id"]
                     for r in find_runs(client, experiment, sweep=name, kind="trial") if r.data.tags["ktsweep.trial_id"] in before}

    done = ktsweep("resume", name, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    oracle = json.loads((oracle_dir / "oracle.json").read_text())
    trials = {f.parent.name.removeprefix("trial_"): json.loads(f.read_text()) for f in oracle_dir.glob("trial_*/trial.json")}
    runs = find_runs(client, experiment, sweep=name, kind="trial")
    ids = [r.data.tags["ktsweep.trial_id"] for r in runs]
    assert sorted(ids) == sorted(set(ids)) == sorted(trials)  # one child run per oracle trial
    # max_epochs 9, factor 3: 3 brackets of 9+3+1, 5+1 and 3 trials, all completed.
    assert sum(t["status"] == "COMPLETED" for t in trials.values()) == len(trials) == 23
    assert oracle["ongoing_trials"] == {}
    for trial_id, ray_id in first_attempt.items():  # completed before the crash: not run again
        run = next(r for r in runs if r.data.tags["ktsweep.trial_id"] == trial_id)
        assert run.data.tags["ray.trial_id"] == ray_id
    # The bracket state continued: trials created after the resume carry on the brackets' numbering.
    continued = [t for t in trials.values() if "tuner/trial_id" in t["hyperparameters"]["values"]]
    assert continued and all(t["hyperparameters"]["values"]["tuner/trial_id"] in trials for t in continued)
    parents = find_runs(client, experiment, sweep=name, kind="sweep")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_can_be_resumed(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from ktsweep.tracking.records import find_runs, local_uri

    name = "interrupted"
    args = ["run", *TINY, "sweep.max_trials=40", f"sweep.name={name}", "tracking.register=false"]
    # As from a terminal: SIGINT at its default. (An ignored SIGINT is inherited across exec,
    # and something earlier in the test session leaves it ignored: the sweep then never saw it.)
    proc = subprocess.Popen([KTSWEEP, *args], cwd=tmp_path, env=user_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    oracle_dir = tmp_path / "ktsweep-runs" / "sweeps" / name / "oracle"
    deadline = time.time() + 300
    while len(completed_trials(oracle_dir)) < 2:
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.2)
    interrupted_at = time.time()
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends to the foreground group
    output, _ = proc.communicate(timeout=60)
    assert time.time() - interrupted_at < 30, "the sweep did not stop within 30 s"
    assert proc.returncode == 130, output[-2000:]
    assert "ktsweep resume" in output and "Traceback" not in output
    leftovers = subprocess.run(["pgrep", "-f", f"ray::.*{tmp_path}"], capture_output=True, text=True).stdout
    assert not leftovers.strip()

    client = MlflowClient(local_uri(str(tmp_path / "ktsweep-runs")))
    experiment = client.get_experiment_by_name("ktsweep").experiment_id
    parent = find_runs(client, experiment, sweep=name, kind="sweep")[0]
    assert parent.info.status == "KILLED"

    done = ktsweep("resume", name, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(int(t) for t in completed_trials(oracle_dir)) == list(range(40))
    runs = find_runs(client, experiment, sweep=name, kind="trial")
    assert len(runs) == 40
    assert find_runs(client, experiment, sweep=name, kind="sweep")[0].info.status == "FINISHED"


@pytest.mark.slow
def test_two_sweeps_at_once_share_one_store(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from ktsweep.tracking.records import find_runs, local_uri

    procs = {
        name: subprocess.Popen([KTSWEEP, "run", *TINY, "sweep.max_trials=4", f"sweep.name={name}", f"tuner={tuner}"],
                               cwd=tmp_path, env=user_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for name, tuner in (("first", "random"), ("second", "bayesian"))
    }
    for name, proc in procs.items():
        output, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{name}: {output[-2000:]}"
    client = MlflowClient(local_uri(str(tmp_path / "ktsweep-runs")))
    experiment = client.get_experiment_by_name("ktsweep").experiment_id
    for name in procs:
        parent = find_runs(client, experiment, sweep=name, kind="sweep")
        trials = find_runs(client, experiment, sweep=name, kind="trial")
        assert len(parent) == 1 and parent[0].info.status == "FINISHED"
        assert len(trials) == 4 and all(r.info.status == "FINISHED" for r in trials)
        assert all(len(client.get_metric_history(r.info.run_id, "val_accuracy")) == 2 for r in trials)
    listed = ktsweep("list", cwd=tmp_path)
    assert listed.returncode == 0 and "first" in listed.stdout and "second" in listed.stdout
