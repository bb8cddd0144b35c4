"""Two sweeps at once against one MLflow tracking server, started as users start them.

Two ``ktsweep run tracking=server`` processes (each with its own local Ray) of 20 trivial
trials each, registering the same model (the default name, ``ktsweep-digits``): nothing is
lost or duplicated, each sweep decides its own promotion in registration order, and the
``champion`` alias and tag end on the better sweep.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from concurrent_sweeps import audit, ktsweep_run, run_all
from servers import mlflow_server

TRIALS = 20
MODEL = "ktsweep-digits"  # tracking.registered_model's default for data=digits: both sweeps share it


@pytest.mark.slow
def test_two_sweeps_at_once_on_one_server(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    with mlflow_server(tmp_path / "server", timeout=600) as server:  # slow to start on a loaded machine
        sweeps = [ktsweep_run(root, server.uri, name, TRIALS) for name in ("alpha", "beta")]
        run_all(sweeps, timeout=1500)
        for sweep in sweeps:
            assert sweep.proc.returncode == 0, sweep.output()[-3000:]
        client = server.client()
        experiments = [e for e in client.search_experiments() if e.name == "ktsweep"]
        assert len(experiments) == 1  # both created it at once: one experiment
        found = {sweep.name: audit(client, experiments[0].experiment_id, sweep.name, model=MODEL) for sweep in sweeps}
        names = []
        for name, record in found.items():
            assert (record.parent_runs, record.parent_status) == (1, "FINISHED"), record
            assert (record.trials, record.finished) == (TRIALS, TRIALS), record  # nothing lost, nothing extra
            assert not (record.duplicate_names or record.duplicate_trial_ids or record.duplicate_steps), record
            assert record.version is not None and record.version.isdigit(), record  # one version per sweep
            names += [run.info.run_name for run in client.search_runs(
                [experiments[0].experiment_id], f"tags.`ktsweep.sweep` = '{name}' and tags.`ktsweep.kind` = 'trial'")]
            # each sweep's own Ray ran exactly its own trials
            assert len(list((root / "sweeps" / name / "ray-0").glob("trial_*"))) == TRIALS
        assert len(set(names)) == len(names) == 2 * TRIALS

        # Registration order decides: the first version met no champion, the second was compared with it.
        first, second = sorted(found.values(), key=lambda record: int(record.version))
        assert first.promotion == "promoted"
        assert second.promotion == ("promoted" if second.best > first.best else "kept"), (first, second)
        winner = second if second.best > first.best else first
        champion = client.get_model_version_by_alias(MODEL, "champion")
        assert str(champion.version) == winner.version
        assert [r.name for r in found.values() if r.champion_tag == "true"] == [winner.name]


def test_sweeps_started_in_the_same_millisecond_get_their_own_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh name comes from the clock; two ``ktsweep run`` under one root in the same millisecond
    would otherwise share one folder and one MLflow run (the second would "resume" the first)."""
    from ktsweep.core import sweep_folder as sweep_files

    same, later = datetime(2026, 11, 26, 1, 0, 0, 123000), datetime(2026, 11, 26, 1, 0, 0, 124000)
    moments = iter([same, same, later])
    monkeypatch.setattr(sweep_files, "datetime", SimpleNamespace(now=lambda: next(moments)))
    config = SimpleNamespace(sweep=SimpleNamespace(name="", root=str(tmp_path)), data=SimpleNamespace(name="digits"))
    first, second = (sweep_files.sweep_name(config, "random") for _ in range(2))
    assert (first, second) == ("digits-random-20261126-010000-123", "digits-random-20261126-010000-124")
    assert sorted(p.name for p in (tmp_path / "sweeps").iterdir()) == [first, second]


@pytest.mark.parametrize("mode", ["run", "sweep"])
def test_sweeps_started_in_the_same_second_keep_their_own_hydra_folder(mode: str) -> None:
    """Measured: 4 sweeps started together wrote one ``hydra/DATE_TIME/`` folder (overrides.yaml named
    only the last). The folder's time must tell apart two starts within one second."""
    import re
    from importlib.resources import files

    from omegaconf import OmegaConf

    from ktsweep.conf.compose import CONFIG_MODULE, CONFIG_NAME

    config = OmegaConf.load(files(CONFIG_MODULE) / f"{CONFIG_NAME}.yaml")
    pattern = re.fullmatch(r".*\$\{now:([^}]*)\}", OmegaConf.to_container(config.hydra)[mode]["dir"]).group(1)
    first, second = datetime(2026, 11, 26, 1, 21, 54, 100000), datetime(2026, 11, 26, 1, 21, 54, 100500)
    assert first.strftime(pattern) != second.strftime(pattern)


class SlowMlflow(http.server.BaseHTTPRequestHandler):
    """An MLflow server that answers, but only after ``DELAY`` s (busy with other sweeps): no experiment yet."""

    DELAY = 12.0  # more than the 10 s one request was given before

    def answer(self, body: dict) -> None:
        time.sleep(self.DELAY)
        found = b"experiments/get-by-name" not in self.requestline.encode()
        data = json.dumps(body if found else {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "none"}).encode()
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.answer({})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.answer({"experiment_id": "7"})

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.slow
def test_a_server_slow_to_answer_is_waited_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Several sweeps starting on one server can make it answer in more than 10 s: that is no outage,
    the sweep goes on (a server that is down still fails at once: tests/test_tracking_outage.py)."""
    from ktsweep.tracking.records import connect

    for key in ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES"):
        monkeypatch.setenv(key, "")  # restored after the test; connect() sets its own defaults
        monkeypatch.delenv(key)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowMlflow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _, experiment_id = connect(f"http://127.0.0.1:{server.server_port}", "ktsweep", root=str(tmp_path))
    finally:
        server.shutdown()
        server.server_close()
    assert experiment_id == "7"


def test_a_dataset_two_sweeps_log_at_once_is_logged(tmp_path: Path) -> None:
    """Measured with two sweeps sharing one Ray: both logged the digits dataset at the same moment,
    the server's store looked it up, found none, and one insert failed on its unique key (that
    sweep died). Injected here: the other sweep's insert lands between lookup and insert."""
    from mlflow import MlflowClient
    from mlflow.exceptions import RestException

    from ktsweep.tracking.dataset_input import log_dataset
    from ktsweep.tracking.records import local_uri

    client = MlflowClient(local_uri(str(tmp_path)))
    experiment_id = client.create_experiment("raced")
    mine, other = (client.create_run(experiment_id).info.run_id for _ in range(2))
    described = {"dataset": {"name": "digits", "digest": "65b294d4", "source_type": "code", "source": "{}"},
                 "tags": {"mlflow.data.context": "training"}}

    class Raced:
        """The store as the losing sweep sees it: its first insert collides with the other sweep's."""

        calls = 0

        def log_inputs(self, run_id: str, datasets: list) -> None:
            self.calls += 1
            if self.calls == 1:
                client.log_inputs(other, datasets=datasets)  # the other sweep's insert wins
                raise RestException({"error_code": "BAD_REQUEST", "message": "(sqlite3.IntegrityError) UNIQUE "
                                     "constraint failed: datasets.experiment_id, datasets.name, datasets.digest"})
            client.log_inputs(run_id, datasets=datasets)

    log_dataset(Raced(), mine, described)
    for run_id in (mine, other):
        assert [i.dataset.digest for i in client.get_run(run_id).inputs.dataset_inputs] == ["65b294d4"]
