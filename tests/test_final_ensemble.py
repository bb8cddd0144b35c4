"""The final ensemble (``sweep.final.ensemble``): which trials it takes, and the model it builds."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from ktsweep.search.oracles import distinct_best_trials


def _trial(trial_id: str, score: float, values: dict[str, Any]) -> Any:
    return SimpleNamespace(trial_id=trial_id, score=score, status="COMPLETED", best_step=1,
                           hyperparameters=SimpleNamespace(values=values, get_config=lambda: {}))


def test_members_have_distinct_hyperparameters() -> None:
    """Hyperband continues a trial under a new id with the same values: counted once, the best copy kept."""
    trials = [
        _trial("a", 0.9, {"units": 32, "tuner/epochs": 9, "tuner/trial_id": "c"}),
        _trial("b", 0.8, {"units": 64}),
        _trial("c", 0.7, {"units": 32, "tuner/epochs": 3}),
        _trial("d", 0.6, {"units": 16}),
    ]
    failed = SimpleNamespace(trial_id="e", score=None, status="FAILED", hyperparameters=SimpleNamespace(values={}))
    oracle = SimpleNamespace(trials={t.trial_id: t for t in [*trials, failed]},
                             get_best_trials=lambda n: [*trials, failed][:n])
    assert [t.trial_id for t in distinct_best_trials(oracle, 3)] == ["a", "b", "d"]
    assert [t.trial_id for t in distinct_best_trials(oracle, 9)] == ["a", "b", "d"]  # fewer than asked: what there is


class _TwoHeads:
    """A HyperModel's data mapping for a model with a list of two inputs and two named outputs."""

    def model_inputs(self, x: np.ndarray) -> Any:
        return [x[:, :2], x[:, 2:]]

    def model_targets(self, y: np.ndarray) -> Any:
        return [y, 2 * y]


def _two_head_model(seed: int) -> Any:
    import keras

    keras.utils.set_random_seed(seed)
    left, right = keras.Input((2,)), keras.Input((3,))
    hidden = keras.layers.Dense(4, activation="relu")(keras.layers.Concatenate()([left, right]))
    main, aux = keras.layers.Dense(1, name="main")(hidden), keras.layers.Dense(1, name="aux")(hidden)
    model = keras.Model([left, right], [main, aux])
    # keyed by output name: the ensemble's outputs must keep these names
    model.compile(optimizer="adam", loss={"main": "mse", "aux": "mse"}, metrics={"main": ["mae"]})
    return model


@pytest.mark.backend
def test_ensemble_of_list_output_models_averages_each_output(tmp_path: Path) -> None:
    import keras

    from ktsweep.data.loaders import Dataset
    from ktsweep.execution.final import FitSettings, finalize
    from ktsweep.execution.trainable import MODEL_FILE

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 5)).astype("float32"), rng.normal(size=(40, 1)).astype("float32")
    dataset = Dataset("d", x[:30], y[:30], x[:5], y[:5], x[30:], y[30:], task="regression")
    checkpoints, members = [], []
    for seed in (1, 2):
        folder = tmp_path / f"trial{seed}"
        folder.mkdir()
        model = _two_head_model(seed)
        model.save(folder / MODEL_FILE)
        checkpoints.append(str(folder))
        members.append(model)
    trials = [_trial("t1", 0.9, {"units": 4}), _trial("t2", 0.8, {"units": 8})]

    out_dir, result = finalize(dataset=dataset, hypermodel=_TwoHeads(), trials=trials, checkpoints=checkpoints,
                               retrain=False, settings=FitSettings(), cpus=1.0, out_dir=str(tmp_path / "final"), code_folder=".")

    ensemble = keras.models.load_model(Path(out_dir) / MODEL_FILE, safe_mode=True)
    assert ensemble.output_names == ["main", "aux"]
    inputs = _TwoHeads().model_inputs(dataset.x_test)
    expected = [np.mean([np.asarray(m.predict(inputs, verbose=0)[i]) for m in members], axis=0) for i in range(2)]
    for got, want in zip(ensemble.predict(inputs, verbose=0), expected):
        np.testing.assert_allclose(np.asarray(got), want, atol=1e-6)
    main_mse = float(np.mean((expected[0] - dataset.y_test) ** 2))
    assert result.test_metrics["test_main_loss"] == pytest.approx(main_mse, rel=1e-4)
    assert [m["trial_id"] for m in result.members] == ["t1", "t2"]
    assert all("test_main_loss" in m["test_metrics"] for m in result.members)
