"""The sweep report: built from MLflow alone, every trial and each chart's data in one offline page."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from ktsweep.dashboards.report import build_report
from ktsweep.search.records import TAG_TRIAL, find_runs


@pytest.fixture(scope="module")
def hyperband_sweep(run_sweep: Any) -> Any:
    outcome, _ = run_sweep("tuner=hyperband", "sweep.epochs=3", "hypermodel.space.n_hidden.max=2", "tracking.register=false")
    return outcome


def test_report_has_every_trial_and_each_chart(hyperband_sweep: Any, mlflow_client: Any) -> None:
    page = build_report(mlflow_client, hyperband_sweep.experiment_id, hyperband_sweep.name)
    trials = [r.data.tags[TAG_TRIAL] for r in find_runs(mlflow_client, hyperband_sweep.experiment_id, sweep=hyperband_sweep.name, kind="trial")]
    assert len(trials) == 6
    for trial in trials:
        assert f"data-trial='{trial}'" in page and f"trial {trial}" in page  # leaderboard row + learning curve
    for chart in ("Parallel coordinates", "Scatter matrix", "Learning curves"):
        assert f"<h2>{chart}</h2>" in page
    assert '"type":"parcoords"' in page and '"type":"splom"' in page and '"type":"scatter"' in page
    assert "ticktext" in page and '"optimizer"' in page  # the categorical hyperparameter is a coordinate
    assert "too few to say" in page  # 6 trials: no importance chart, and the report says why
    assert "<script src=" not in page and len(page) > 1_000_000  # plotly.js inlined: works offline
    assert re.search(r"<dt>best</dt><dd>0\.\d{4} \(trial \d+\)</dd>", page)


def test_hyperband_curves_are_grouped_by_bracket_and_lineage(hyperband_sweep: Any, mlflow_client: Any) -> None:
    from ktsweep.dashboards.report import learning_curves, lineage_root

    curves = learning_curves(mlflow_client, hyperband_sweep.experiment_id, hyperband_sweep.name, "val_accuracy")
    continued = [c for c in curves.values() if c.parent]
    assert continued
    for curve in continued:
        assert curve.points[0][0] == curves[curve.parent].points[-1][0] + 1  # picks up at the next epoch
        assert lineage_root(curves, curve.trial) == lineage_root(curves, curve.parent)
    page = build_report(mlflow_client, hyperband_sweep.experiment_id, hyperband_sweep.name)
    names = re.findall(r"\"name\":\"(trial [^\"]*)\"", page)
    assert any("round 1)" in n for n in names), names
    assert "\"legendgroup\"" in page


def test_report_renders_in_a_real_browser(hyperband_sweep: Any, mlflow_client: Any, tmp_path: Path) -> None:
    """Headless Chromium runs plotly.js: the charts exist in the rendered DOM and the page is not blank."""
    import shutil
    import subprocess

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium is not installed (make test installs Debian's chromium when apt-get can run)")
    page = tmp_path / "report.html"
    page.write_text(build_report(mlflow_client, hyperband_sweep.experiment_id, hyperband_sweep.name))
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000"]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert dom.count('class="main-svg"') >= 6  # plotly drew its SVG layers for every chart
    assert "parcoords" in dom and 'class="scatterlayer' in dom
    artifacts = Path(__file__).resolve().parents[1] / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    shot = artifacts / "report.png"
    subprocess.run([*flags, "--window-size=1280,3000", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    import matplotlib.image

    pixels = matplotlib.image.imread(str(shot))
    assert pixels.std() > 0.05  # not a blank page


def test_report_is_logged_with_the_sweep(hyperband_sweep: Any, mlflow_client: Any, tmp_path: Path) -> None:
    path = mlflow_client.download_artifacts(hyperband_sweep.parent_run_id, "report.html", str(tmp_path))
    assert "Learning curves" in Path(path).read_text()


def test_importance_with_enough_trials() -> None:
    import pandas as pd

    from ktsweep.dashboards.report import importance

    frame = pd.DataFrame({"lr": [0.001 * i for i in range(1, 11)], "opt": ["sgd", "adam"] * 5,
                          "val_accuracy": [0.1 * i for i in range(1, 11)]})
    scores, note = importance(frame, ["lr", "opt"], "val_accuracy")
    assert scores["lr"] > scores["opt"] and "10 finished trials" in note
