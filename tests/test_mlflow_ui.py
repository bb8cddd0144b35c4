"""What a Keras user sees in MLflow: the experiment in model-training mode, named trial runs, the sweep's
description and convergence, and (slow) MLflow's own UI in headless Chromium, served by ``ktsweep ui``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from browser import artifacts_dir, devtools
from servers import free_port

from ktsweep.tracking.mlflow_callback import BEST_SO_FAR
from ktsweep.tracking.records import (
    MODEL_TRAINING,
    TAG_EXPERIMENT_KIND,
    TAG_NOTE,
    TAG_TRIAL,
    connect,
    find_runs,
    local_uri,
)

KTSWEEP = [sys.executable, "-m", "ktsweep"]
EXPAND = 'button[data-component-id$="runnamecellrenderer.tsx_46"]'  # MLflow's expander of a parent run's row


@pytest.fixture(scope="module")
def small_sweep(run_sweep: Any) -> Any:
    outcome, _ = run_sweep("sweep.max_trials=3", "sweep.epochs=2", "hypermodel.space.n_hidden.max=1",
                           "tracking.register=false")
    return outcome


def test_experiment_is_created_and_updated_as_model_training(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    uri = local_uri(str(tmp_path))
    client, experiment_id = connect(uri, "fresh", root=str(tmp_path))
    assert client.get_experiment(experiment_id).tags[TAG_EXPERIMENT_KIND] == "custom_model_development"
    older = MlflowClient(uri).create_experiment("older", tags={TAG_EXPERIMENT_KIND: "genai_development"})
    _, found = connect(uri, "older", root=str(tmp_path))
    assert found == older and client.get_experiment(older).tags[TAG_EXPERIMENT_KIND] == MODEL_TRAINING


def test_mlflow_ui_knows_the_experiment_kind() -> None:
    """The tag's key and value are the ones MLflow's own UI writes for a model-training experiment."""
    import mlflow

    bundle = Path(mlflow.__file__).parent / "server" / "js" / "build" / "static" / "js"
    code = "".join(path.read_text(errors="replace") for path in bundle.glob("*.js"))
    assert f'CUSTOM_MODEL_DEVELOPMENT="{MODEL_TRAINING}"' in code
    assert f'key:"{TAG_EXPERIMENT_KIND}"' in code


def test_trial_runs_description_and_convergence(small_sweep: Any, mlflow_client: Any) -> None:
    trials = find_runs(mlflow_client, small_sweep.experiment_id, sweep=small_sweep.name, kind="trial")
    assert sorted(r.info.run_name for r in trials) == [f"{small_sweep.name} / trial {r.data.tags[TAG_TRIAL]}"
                                                       for r in sorted(trials, key=lambda r: r.data.tags[TAG_TRIAL])]
    assert len(trials) == 3
    note = mlflow_client.get_run(small_sweep.parent_run_id).data.tags[TAG_NOTE]
    assert f"`{small_sweep.name}`" in note and "random search" in note and "val_accuracy" in note
    assert "3 completed, 0 failed" in note and f"(trial {small_sweep.best_trial_id})" in note
    assert "`ktsweep run " in note and "sweep.max_trials=3" in note
    history = mlflow_client.get_metric_history(small_sweep.parent_run_id, BEST_SO_FAR)
    steps = sorted((m.step, m.value) for m in history)
    assert [step for step, _ in steps] == [1, 2, 3]
    values = [value for _, value in steps]
    assert values == sorted(values) and values[-1] == pytest.approx(small_sweep.best_score)
    # Per-epoch metrics keep step=epoch, so the chart view overlays the trials' learning curves.
    assert sorted(m.step for m in mlflow_client.get_metric_history(trials[0].info.run_id, "val_accuracy")) == [0, 1]


def test_ui_says_in_one_line_when_the_port_is_taken(small_sweep: Any, store_root: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([*KTSWEEP, "ui", "--root", str(store_root), "--port", str(port)],
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"port {port} on 127.0.0.1 is taken" in lines[0] and "--port" in lines[0], done.stderr


@contextlib.contextmanager
def ktsweep_ui(*args: str) -> Any:
    """``ktsweep ui`` as a user runs it; yields (process, the address it printed). Stopped with SIGTERM, which
    must stop MLflow's server too; anything it leaves behind is killed, and the test then fails."""
    proc = subprocess.Popen([*KTSWEEP, "ui", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        first = proc.stdout.readline()  # printed only once the server answers
        assert first.startswith("MLflow UI: http://"), (first, proc.stderr.read() if proc.poll() is not None else "")
        yield proc, first.split(": ", 1)[1].strip()
    finally:
        server = _children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        leftovers = [pid for pid in server if Path(f"/proc/{pid}").exists() and _state(pid) != "Z"]
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        assert not leftovers, "ktsweep ui left MLflow's server running"


def _children(pid: int) -> list[int]:
    with contextlib.suppress(OSError, ValueError):
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


def _state(pid: int) -> str:
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return "Z"


@pytest.mark.slow
def test_mlflow_ui_in_a_browser(small_sweep: Any, store_root: Path, mlflow_client: Any) -> None:
    """`ktsweep ui` serves the store; Chromium opens the printed address on the runs table in model-training
    mode (not the GenAI overview), with the dataset in the Dataset column and the trials under the sweep.
    `ktsweep ui SWEEP` against that server prints the sweep's own page, which shows its description."""
    name, port, experiment = small_sweep.name, free_port(), small_sweep.experiment_id
    digest = mlflow_client.get_run(small_sweep.parent_run_id).inputs.dataset_inputs[0].dataset.digest
    parts = f"[...document.querySelectorAll('[row-id=\"{small_sweep.parent_run_id}\"]')]"  # ag-grid splits a row
    row = f"{parts}.map(r => r.innerText).join(' ')"
    trial_rows = f"[...document.querySelectorAll('[role=row]')].map(r => r.innerText).filter(t => t.includes('{name} / trial'))"
    with ktsweep_ui("--root", str(store_root), "--port", str(port)) as (_, address):
        assert address == f"http://127.0.0.1:{port}/#/experiments/{experiment}/runs?workflowType=machine_learning"
        one = subprocess.run([*KTSWEEP, "ui", name, "--tracking-uri", f"http://127.0.0.1:{port}"],
                             capture_output=True, text=True, timeout=120)
        run_page = one.stdout.strip().removeprefix("MLflow UI: ")
        assert run_page == (f"http://127.0.0.1:{port}/#/experiments/{experiment}/runs/{small_sweep.parent_run_id}"
                            "?workflowType=machine_learning"), one

        async def look() -> dict[str, Any]:
            async with devtools() as page:
                await page.call("Page.enable")
                await page.navigate(address)
                await page.wait_for(f"document.body && {row}.includes('{name}')", what=f"the row of sweep {name}")
                seen: dict[str, Any] = {
                    "title": await page.evaluate("document.title"),
                    "selected": await page.evaluate("[...document.querySelectorAll('nav a[aria-current=page]')]"
                                                    ".map(a => [a.innerText.trim(), a.getAttribute('href')])"),
                    "text": await page.evaluate("document.body.innerText"),
                    "row": await page.wait_for(f"{row}.includes('({digest})') && {row}", what="the dataset in the sweep's row"),
                }
                await page.evaluate(f"{parts}.map(r => r.querySelector('{EXPAND}')).find(Boolean).click()")
                seen["trials"] = await page.wait_for(f"{trial_rows}.length === 3 && {trial_rows}",
                                                     what="the trials under the sweep")
                await page.screenshot(artifacts_dir() / "mlflow-ui.png")
                await page.navigate(run_page)
                seen["run page"] = await page.wait_for(
                    "document.body.innerText.includes('ktsweep sweep') && document.body.innerText",
                    what="the sweep's description on its page")
                return seen

        seen = asyncio.run(look())
    assert seen["title"].startswith("Runs - ")
    assert [text for text, _ in seen["selected"]] == ["Runs"], seen["selected"]
    assert f"/experiments/{experiment}/runs" in seen["selected"][0][1]
    for genai in ("Detect Issues", "Token Usage", "Training runs"):  # the GenAI overview and its side bar
        assert genai not in seen["text"]
    assert f"digits ({digest})" in seen["row"]
    for trial in ("0", "1", "2"):
        assert any(f"{name} / trial {trial}" in text for text in seen["trials"])
    assert f"ktsweep sweep {name}" in seen["run page"] and "3 completed, 0 failed" in seen["run page"]
    assert f"digits ({digest})" in seen["run page"]  # its Datasets section
