"""A trial's optimizer and metric variables are made before fit() traces its step (speed, and a flat worker)."""

from __future__ import annotations

import collections
import gc
from typing import Any

import keras_tuner as kt
import numpy as np
import pytest
from test_wide_deep import hypermodel_of

from ktsweep.execution.trainable import build_training_state
from ktsweep.execution.worker_backend import TrialState, custom_gradients


def digits_hypermodel() -> tuple[Any, Any]:
    from ktsweep.conf.compose import compose, validate
    from ktsweep.search.inputs import load_data, load_hypermodel

    config = validate(compose(["sweep.root=unused"]))
    dataset = load_data(config)
    return dataset, load_hypermodel(config, dataset)


def live_graphs() -> collections.Counter:
    from tensorflow.python.framework.func_graph import FuncGraph

    gc.collect()
    return collections.Counter(g.name.split("_")[0] for g in gc.get_objects() if isinstance(g, FuncGraph))


def variable_graphs(grown: collections.Counter) -> int:
    """Graphs other than fit's own step (``one_step_on_data``): those of variables made inside it."""
    return sum(count for name, count in grown.items() if name != "one")


def build_and_fit(dataset: Any, hypermodel: Any, *, prebuild: bool, release: bool = False) -> Any:
    """One trial's life in a warm worker (``run_trial`` without Ray)."""
    import keras

    from ktsweep.hypermodels.base import model_inputs, model_targets

    keras.backend.clear_session()
    state = TrialState()
    model = hypermodel.build(kt.HyperParameters())
    x, y = model_inputs(hypermodel, dataset.x_train[:256]), model_targets(hypermodel, dataset.y_train[:256])
    if prebuild:
        build_training_state(model, x, y)
        assert model.optimizer.built and model._compile_metrics.built
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    keras.backend.clear_session()
    if release:
        state.release()
    return model


def test_fits_in_a_warm_worker_leave_no_optimizer_or_metric_graphs_behind() -> None:
    dataset, hypermodel = digits_hypermodel()
    before = live_graphs()
    for _ in range(3):
        build_and_fit(dataset, hypermodel, prebuild=True)
    grown = live_graphs() - before
    # Keras' lazily built optimizer and metric variables would leave their graphs per fit here;
    # what remains is TensorFlow's own step graph (one per fit, bench/RESULTS.md table 4).
    assert variable_graphs(grown) == 0, grown
    assert grown["one"] <= 3, grown


def test_released_trials_leave_no_step_graph_behind() -> None:
    """With the trial's custom-gradient entries dropped (as ``run_trial`` does), no graph of it survives;
    the test above is the control: without it, one step graph per fit stays."""
    dataset, hypermodel = digits_hypermodel()
    before_graphs, before_gradients = live_graphs(), custom_gradients()
    for _ in range(3):
        build_and_fit(dataset, hypermodel, prebuild=True, release=True)
    grown = live_graphs() - before_graphs
    assert sum(grown.values()) == 0, grown
    assert custom_gradients() <= before_gradients


def test_without_the_prebuild_the_graphs_do_stay() -> None:
    """The control: the assertion above is about the prebuild, not about TensorFlow freeing graphs anyway."""
    dataset, hypermodel = digits_hypermodel()
    before = live_graphs()
    build_and_fit(dataset, hypermodel, prebuild=False)
    grown = live_graphs() - before
    assert variable_graphs(grown) > 0, grown


@pytest.mark.parametrize("kind", ["functional", "subclassed"])
def test_two_input_two_output_models_are_prebuilt_too(kind: str, housing: Any) -> None:
    hypermodel = hypermodel_of(kind, housing)
    model = build_and_fit(housing, hypermodel, prebuild=True)
    assert np.isfinite(model.get_weights()[0]).all()
