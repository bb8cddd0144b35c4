"""The sweep report: built from MLflow alone, every trial and each chart's data in one offline page."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from ktsweep.dashboards.report import build_report
from ktsweep.tracking.records import TAG_TRIAL, find_runs


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
    for chart in ("Convergence", "Parallel coordinates", "Scatter matrix", "Learning curves"):
        assert f"<h2>{chart}</h2>" in page
    from ktsweep.dashboards.report import log_sampled

    assert log_sampled(mlflow_client, hyperband_sweep.parent_run_id) == {"learning_rate"}  # from the oracle's state
    assert "learning_rate (log)" in page and '"type":"log"' in page
    assert '"type":"parcoords"' in page and '"type":"splom"' in page and '"type":"scatter"' in page
    assert "ticktext" in page and '"optimizer"' in page  # the categorical hyperparameter is a coordinate
    assert "too few to say" in page  # 6 trials: no importance chart, and the report says why
    assert "<script src=" not in page and len(page) > 1_000_000  # plotly.js inlined: works offline
    assert re.search(r"<dt>best</dt><dd>0\.\d{4} \(trial \d+\)</dd>", page)
    assert re.search(r"<dt>backend</dt><dd>tensorflow 2\.\d+\.\d+</dd>", page)  # Keras' backend and its version
    assert re.search(r"<dt>final model</dt><dd>best trial&#x27;s model; test set: test_accuracy=0\.\d{4}, test_loss=", page)


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
    """Headless Chromium runs plotly.js: the charts exist in the rendered DOM and the page is not blank;
    the log-sampled learning rate is drawn on log axes (decade ticks), the convergence chart comes first."""
    from browser import artifacts_dir, headless

    page = tmp_path / "report.html"
    page.write_text(build_report(mlflow_client, hyperband_sweep.experiment_id, hyperband_sweep.name))
    dom = headless("--virtual-time-budget=15000", "--dump-dom", page.as_uri()).stdout
    assert dom.count('class="main-svg"') >= 8  # plotly drew its SVG layers for every chart
    assert "parcoords" in dom and 'class="scatterlayer' in dom
    assert dom.index("<h2>Convergence</h2>") < dom.index("<h2>Parallel coordinates</h2>")
    assert ">learning_rate (log)<" in dom  # the parallel-coordinates axis
    shot = artifacts_dir() / "report.png"
    headless("--virtual-time-budget=15000", "--window-size=1280,3000", f"--screenshot={shot}", page.as_uri())
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


def test_log_sampled_hyperparameters_get_log_axes() -> None:
    import pandas as pd

    from ktsweep.dashboards.report import figures

    rates = [1e-4, 3e-4, 2e-3, 8e-3]
    frame = pd.DataFrame({"trial": ["0", "1", "2", "3"], "status": ["COMPLETED"] * 4, "val_accuracy": [0.2, 0.5, 0.9, 0.7],
                          "learning_rate": rates, "n_neurons": [16, 32, 64, 128]})
    charts = dict(figures(frame, {}, "val_accuracy", "2", {}, log_scaled=frozenset({"learning_rate"})))
    axis = charts["Parallel coordinates"].data[0].dimensions[0]
    assert axis.label == "learning_rate (log)" and list(axis.values) == pytest.approx([-4, -3.523, -2.699, -2.097], abs=1e-3)
    assert list(axis.ticktext) == ["0.0001", "0.001", "0.008"]  # every decade, and the top end
    layout = charts["Scatter matrix"].layout
    assert (layout.xaxis.type, layout.yaxis.type) == ("log", "log")  # learning_rate is the first dimension
    assert "xaxis2" not in layout.to_plotly_json()  # n_neurons is sampled linearly: default axes
    linear = dict(figures(frame, {}, "val_accuracy", "2", {}))
    assert list(linear["Parallel coordinates"].data[0].dimensions[0].values) == rates


def test_convergence_counts_finished_trials_in_the_order_they_ended() -> None:
    from types import SimpleNamespace as Run

    from ktsweep.dashboards.report import convergence

    def run(trial: str, end: int | None, status: str, objective: float | None) -> Any:
        metrics = {} if objective is None else {"objective": objective}
        return Run(info=Run(end_time=end, status=status), data=Run(metrics=metrics, tags={TAG_TRIAL: trial}))

    runs = [run("0", 30, "FINISHED", 0.5), run("1", 10, "FAILED", None), run("2", 20, "FINISHED", 0.3),
            run("3", None, "RUNNING", None), run("4", 40, "FINISHED", 0.9)]
    assert convergence(runs, "max") == [(2, "2", 0.3, 0.3), (3, "0", 0.5, 0.5), (4, "4", 0.9, 0.9)]
    assert [p[3] for p in convergence(runs, "min")] == [0.3, 0.3, 0.3]


def test_a_large_sweep_draws_the_best_curves_with_the_trials_they_continued() -> None:
    """Past MAX_CURVES trials the report reads (one query each) and draws only the best trials' curves."""
    from types import SimpleNamespace as Run

    from ktsweep.dashboards.report import best_runs

    def run(trial: str, objective: float | None, parent: str | None = None) -> Any:
        params = {} if parent is None else {"tuner/trial_id": parent}
        return Run(data=Run(metrics={} if objective is None else {"objective": objective}, params=params,
                            tags={TAG_TRIAL: trial}))

    runs = [run(str(i), i / 10) for i in range(8)] + [run("8", None), run("9", 0.95, parent="1"), run("10", 0.99, "9")]
    chosen = sorted((r.data.tags[TAG_TRIAL] for r in best_runs(runs, "max", 3)), key=int)
    assert chosen == ["1", "7", "9", "10"]  # the best three (10, 9, 7), and the chain 10 -> 9 -> 1
    assert sorted(r.data.tags[TAG_TRIAL] for r in best_runs(runs, "min", 2)) == ["0", "1"]  # no objective: last
