"""Every preset in conf/experiment/ composes through the CLI and runs end to end on a tiny budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from test_cli import ktsweep
from test_datasets import write_idx

PRESETS = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "ktsweep" / "conf" / "experiment").glob("*.yaml"))
# The smallest budget each preset allows: one or two short trials, narrow networks.
TINY = {
    "digits_quick": ["sweep.max_trials=2", "sweep.epochs=1"],
    "housing_mlp": ["sweep.max_trials=3", "sweep.epochs=1", "scheduler.grace_period=1", "hypermodel.space.n_hidden.min=1",
                    "hypermodel.space.n_hidden.max=1", "hypermodel.space.n_neurons.min=8", "hypermodel.space.n_neurons.max=16"],
    "housing_wide_deep": ["sweep.max_trials=2", "sweep.epochs=1", "hypermodel.space.n_hidden.min=1",
                          "hypermodel.space.n_hidden.max=1", "hypermodel.space.n_neurons.min=8",
                          "hypermodel.space.n_neurons.max=8"],
    "fashion_random": ["sweep.max_trials=2", "sweep.epochs=1"],
    "fashion_hyperband": ["sweep.epochs=2", "tuner.hyperband_iterations=1"],
    "fashion_bayesian": ["sweep.max_trials=2", "sweep.epochs=1", "tuner.num_initial_points=1"],
    "images_cnn": ["tuner.max_trials=2", "sweep.epochs=1"],
}
NEEDS = {"images_cnn": ["data.path=digits-png"]}  # a preset for the user's own files: where they are


def test_every_preset_has_a_tiny_budget() -> None:
    assert sorted(TINY) == PRESETS


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_through_the_cli(preset: str, tmp_path: Path) -> None:
    done = ktsweep("run", f"experiment={preset}", *NEEDS.get(preset, []), "--cfg", "job", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    config = yaml.safe_load(done.stdout)
    assert config["sweep"]["epochs"] >= 1 and config["hypermodel"]["_target_"].startswith("ktsweep.hypermodels.")


# test_wide_deep and test_pipelines run these two
@pytest.mark.parametrize("preset", [p for p in PRESETS if p not in ("housing_wide_deep", "images_cnn")])
def test_preset_runs_on_a_tiny_budget(preset: str, run_sweep: Any, tmp_path: Path) -> None:
    data: list[str] = []
    if preset.startswith("fashion"):
        write_idx(tmp_path / "datasets" / "fashion-mnist", n_train=300, n_test=60)
        data = [f"data.cache_dir={tmp_path}", "data.val_size=60"]
    outcome, config = run_sweep(f"experiment={preset}", *data, *TINY[preset], "tracking.register=false")
    assert outcome.status == "FINISHED", outcome.error
    assert outcome.completed >= 2 and outcome.failed == 0
    assert outcome.best_score is not None
    if config.sweep.final.evaluate_test:
        assert outcome.test_metrics  # the one evaluation on the held-out test split
    if config.sweep.final.ensemble > 1:  # the preset's final model averages its best trials
        assert outcome.final.startswith(f"ensemble of {config.sweep.final.ensemble} trials")
