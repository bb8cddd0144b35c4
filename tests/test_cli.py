"""The installed ``ktsweep`` command, run as a user would (subprocesses)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
KTSWEEP = shutil.which("ktsweep", path=os.path.dirname(sys.executable)) or "ktsweep"
TINY = ["sweep.epochs=2", "hypermodel.space.n_hidden.max=2", "hypermodel.space.n_neurons.max=32"]


def user_env() -> dict[str, str]:
    """The environment of a user's shell: none of the settings this test process has picked up."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for key in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI"):
        env.pop(key, None)
    return env


def ktsweep(*args: str, cwd: Path, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([KTSWEEP, *args], cwd=cwd, env={**user_env(), **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)


def processes_in_session(session: int) -> list[str]:
    """Command lines of the live processes of a session (a command started with start_new_session)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == session and fields[0] != "Z":
                found.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except (OSError, IndexError, ValueError):
            pass  # gone meanwhile
    return found


def test_run_then_list_and_show(tmp_path: Path) -> None:
    proc = subprocess.Popen([KTSWEEP, "run", *TINY, "sweep.max_trials=2", "sweep.name=cli-sweep"], cwd=tmp_path,
                            env=user_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    # The command ends with its own Ray shut down (warm_workers.leave): no raylet, GCS or agent left behind.
    deadline = time.time() + 10
    while (left := processes_in_session(proc.pid)) and time.time() < deadline:
        time.sleep(0.5)
    assert not left
    progress = [line for line in out.splitlines() if line.startswith(("[trials", "done: trials"))]
    assert len(progress) == 3 and progress[0].startswith("[trials 1/2")  # non-TTY: one plain line per trial
    assert progress[-1].startswith("done: trials 2/2")  # ... ending with the summary
    assert "sweep cli-sweep: top 2 of 2 trials" in out  # the leaderboard
    assert "MLflow tracking URI: sqlite:///" in out and "ktsweep ui" in out
    assert "ktsweep-digits version 1 is the champion" in out
    assert (tmp_path / "ktsweep-runs" / "mlflow.db").exists()

    listed = ktsweep("list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "cli-sweep" in listed.stdout and "random" in listed.stdout and "finished" in listed.stdout

    shown = ktsweep("show", "cli-sweep", "--format", "json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    rows = json.loads(shown.stdout)
    assert len(rows) == 2 and {"trial", "val_accuracy", "n_hidden", "learning_rate"} <= set(rows[0])
    assert rows[0]["val_accuracy"] >= rows[1]["val_accuracy"]  # best first
    table = ktsweep("show", "cli-sweep", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "final model: best trial's model; test set: test_accuracy=" in table.stdout  # what was published

    # list/show read the sqlite store directly: the same tables as through MLflow's client,
    # without importing MLflow, TensorFlow or Ray.
    from mlflow import MlflowClient

    from ktsweep.dashboards.leaderboard import sweeps_frame, trials_frame
    from ktsweep.tracking.records import local_uri
    from ktsweep.tracking.sqlite_runs import SqliteRuns

    root = tmp_path / "ktsweep-runs"
    reader = SqliteRuns(str(root / "mlflow.db"))
    client = MlflowClient(local_uri(str(root)))
    experiment_id = reader.experiment_id("ktsweep")
    assert experiment_id == client.get_experiment_by_name("ktsweep").experiment_id
    assert sweeps_frame(reader, experiment_id).equals(sweeps_frame(client, experiment_id))
    assert trials_frame(reader, experiment_id, "cli-sweep")[0].equals(trials_frame(client, experiment_id, "cli-sweep")[0])
    probe = "import sys; from ktsweep.cli.main import main; main({args}); print(sorted(m for m in ('mlflow', 'tensorflow', 'ray') if m in sys.modules))"
    for args in (["list"], ["show", "cli-sweep"]):
        done = subprocess.run([sys.executable, "-c", probe.format(args=args)], cwd=tmp_path, env=user_env(),
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and done.stdout.strip().endswith("[]"), (done.stdout[-500:], done.stderr[-2000:])


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "sweep.foo=1"], "sweep.foo: Key 'foo' not in 'SweepConf'"),
        (["run", "tuner=nope"], "Could not find 'tuner/nope'"),
        (["run", "--multirun", "tuner=random,nope"], "Could not find 'tuner/nope'"),
        (["show", "no-such-sweep"], "no sweeps yet"),
        (["resume", "no-such-sweep"], "no sweep named 'no-such-sweep'"),
        (["run", "sweep.max_trials=1", "executor.address=ray://127.0.0.1:9"],
         "cannot reach the Ray cluster at executor.address=ray://127.0.0.1:9"),
        (["run", "sweep.max_trials=1", "executor.address=127.0.0.1:9"],
         "cannot reach the Ray cluster at executor.address=127.0.0.1:9"),
        (["pull", "some-sweep", "--out", "x", "--tracking-uri", "http://127.0.0.1:9"],
         "cannot reach the MLflow tracking store at http://127.0.0.1:9"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(args: list[str], message: str, tmp_path: Path) -> None:
    done = ktsweep(*args, cwd=tmp_path, timeout=120)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.startswith("ktsweep: error:")]
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_an_unreachable_cluster_fails_before_tensorflow_is_imported(tmp_path: Path) -> None:
    probe = ("import sys\nfrom ktsweep.cli.main import main\ntry:\n    main(['run', 'executor.address=127.0.0.1:9'])\n"
             "except SystemExit as exc:\n    print(exc.code, 'tensorflow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=user_env(), capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.split() == ["2", "False"], (done.stdout[-500:], done.stderr[-2000:])
    assert "cannot reach the Ray cluster at executor.address=127.0.0.1:9" in done.stderr


def test_hydra_cfg_and_help(tmp_path: Path) -> None:
    cfg = ktsweep("run", "--cfg", "job", "tuner=hyperband", "sweep.epochs=9", cwd=tmp_path, timeout=120)
    assert cfg.returncode == 0, cfg.stderr
    assert "_target_: keras_tuner.oracles.HyperbandOracle" in cfg.stdout and "max_epochs: ${sweep.epochs}" in cfg.stdout
    helped = ktsweep("run", "--help", cwd=tmp_path, timeout=120)
    assert helped.returncode == 0
    assert "tuner: bayesian, grid, hyperband, motpe, nsga2, random" in helped.stdout and "Configs are code" in helped.stdout
    assert "scheduler: asha, median, none, pbt" in helped.stdout
    top = ktsweep("--help", cwd=tmp_path, timeout=60)
    assert top.returncode == 0 and "resume" in top.stdout and "ui" in top.stdout


@pytest.mark.slow
def test_multirun_runs_each_strategy(tmp_path: Path) -> None:
    done = ktsweep("run", "--multirun", "tuner=random,bayesian", *TINY, "sweep.max_trials=2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    listed = ktsweep("list", cwd=tmp_path)
    assert "random" in listed.stdout and "bayesian" in listed.stdout


@pytest.mark.slow
def test_ui_binds_loopback(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([KTSWEEP, "ui", "--port", str(port)], cwd=tmp_path, env=user_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("MLflow UI did not start within 90 s")
        listening = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout if shutil.which("ss") else ""
        if listening:
            lines = [line for line in listening.splitlines() if f":{port} " in line]
            assert lines and all("127.0.0.1" in line for line in lines), lines
        started = descendants(proc.pid)  # the MLflow server, its uvicorn worker; not MLflow's job runner
        assert any("mlflow" in args and "server" in args for args in started), started
        assert not any("huey" in args for args in started), started
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def descendants(pid: int) -> list[str]:
    """The command lines of a process's descendants."""
    table = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,args="], capture_output=True, text=True).stdout
    rows = [line.split(None, 2) for line in table.splitlines() if len(line.split(None, 2)) == 3]
    found, frontier = [], {str(pid)}
    while frontier:
        children = [row for row in rows if row[1] in frontier]
        found += [row[2] for row in children]
        frontier = {row[0] for row in children}
    return found


USER_PROJECT = Path(__file__).resolve().parent / "user_project"  # its own conf/ package and search.py


def copy_user_project(folder: Path) -> Path:
    shutil.copytree(USER_PROJECT, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


@pytest.mark.slow
def test_installed_wheel_composes_its_own_config_beside_a_users_conf(tmp_path: Path) -> None:
    """``pip install .`` (not editable): one ``ktsweep`` package with its YAML and data, and no setuptools warning;
    run from a project that has its own ``conf/`` and ``search.py``, ktsweep composes ktsweep's config."""
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(tmp_path), str(REPO)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    assert "is absent from the `packages` configuration" not in build.stdout + build.stderr  # YAML folders declared
    wheel = next(tmp_path.glob("ktsweep-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for expected in ("ktsweep/__init__.py", "ktsweep/conf/config.yaml", "ktsweep/conf/hypermodel/mlp_classifier.yaml",
                     "ktsweep/conf/tuner/hyperband.yaml", "ktsweep/cli/main.py", "ktsweep/data/california_housing.csv.gz"):
        assert expected in names
    assert not {n.split("/")[0] for n in names if not n.startswith("ktsweep")} - {f"{wheel.name.split('-py3')[0]}.dist-info"}
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    project = copy_user_project(tmp_path / "project")
    env = {**user_env(), "PYTHONPATH": str(target)}
    # `python -m` puts the project folder first on sys.path, as a notebook or `sweep.code_dir` does.
    for command in ([str(target / "bin" / "ktsweep")], [sys.executable, "-m", "ktsweep"]):
        done = subprocess.run([*command, "run", "experiment=housing_mlp", "tuner=bayesian", "--cfg", "job"], cwd=project,
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]  # the project's conf/ and search.py raise on import
        assert "BayesianOptimizationOracle" in done.stdout and "mysql" not in done.stdout
    probe = ("import ktsweep.data.loaders as d; data = d.load_california_housing(name='h', val_fraction=0.1, "
             "test_fraction=0.1, seed=0); print(d.bundled_housing_path(), sum(data.sizes().values()))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=project, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    path, rows = done.stdout.split()
    assert path.startswith(str(target)) and rows == "20640"  # the installed copy, not the repository's
