"""MLflow stops answering mid-sweep: training goes on, records are kept, ``ktsweep sync`` delivers them once."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from servers import mlflow_server
from test_cli import KTSWEEP, TINY, ktsweep, user_env

EPOCHS = 3


@pytest.mark.slow
def test_tracking_server_stops_mid_sweep_then_sync(tmp_path: Path) -> None:
    from ktsweep.tracking.journal import JOURNAL_FILE
    from ktsweep.tracking.records import TAG_STATUS, find_runs

    name = "outage"
    with mlflow_server(tmp_path / "server") as server:
        args = ["run", *TINY[1:], f"sweep.epochs={EPOCHS}", "sweep.max_trials=6", "executor.max_concurrent=1",
                f"sweep.name={name}", "tracking=server", f"tracking.uri={server.uri}", "tracking.registered_model=outage"]
        proc = subprocess.Popen([KTSWEEP, *args], cwd=tmp_path, env=user_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            client = server.client()
            deadline = time.time() + 300
            while True:  # wait for the first finished trial, then take the server away
                assert proc.poll() is None, proc.communicate()[1][-3000:]
                assert time.time() < deadline, "no trial finished within 300 s"
                experiment = client.get_experiment_by_name("ktsweep")
                if experiment and any(r.info.status == "FINISHED" for r in
                                      find_runs(client, experiment.experiment_id, sweep=name, kind="trial")):
                    break
                time.sleep(0.3)
            server.stop()
            out, err = proc.communicate(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
        # The sweep trained to the end, then named the problem, the kept records and the fix.
        assert proc.returncode == 3, err[-3000:]
        assert "6 completed, 0 failed" in out
        assert f"run `ktsweep sync {name}` when it is back" in err.strip().splitlines()[-1]
        journal = tmp_path / "ktsweep-runs" / "sweeps" / name / JOURNAL_FILE
        assert journal.exists() and journal.read_text().strip()

        server.start()
        done = ktsweep("sync", name, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "kept records" in done.stdout and not journal.exists()

        experiment_id = client.get_experiment_by_name("ktsweep").experiment_id
        runs = find_runs(client, experiment_id, sweep=name, kind="trial")
        ids = [r.data.tags["ktsweep.trial_id"] for r in runs]
        assert len(ids) == len(set(ids)) == 6  # one run per trial, none twice
        for run in runs:
            assert run.info.status == "FINISHED" and run.data.tags[TAG_STATUS] == "COMPLETED"
            steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
            assert sorted(steps) == list(range(EPOCHS)), steps  # every epoch, once
            assert "objective" in run.data.metrics
        parent = find_runs(client, experiment_id, sweep=name, kind="sweep")[0]
        assert parent.info.status == "FINISHED" and parent.data.tags[TAG_STATUS] == "finished"
        assert client.get_model_version_by_alias("outage", "champion").run_id == parent.info.run_id

        again = ktsweep("sync", name, cwd=tmp_path)  # nothing left to send, nothing doubled
        assert again.returncode == 0 and "no kept records" in again.stdout
        assert len(find_runs(client, experiment_id, sweep=name, kind="trial")) == 6

        # tracking=server: the model's files are in the server's artifact store, so pull works
        # from anywhere (here: another folder, through the server only).
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        pulled = ktsweep("pull", "outage@champion", "--tracking-uri", server.uri, "--out", "model", cwd=elsewhere)
        assert pulled.returncode == 0, pulled.stderr[-3000:]
        assert "verified on 5 examples" in pulled.stdout and (elsewhere / "model" / "model.keras").exists()
