"""The benchmark sweeps, defined once so that both contenders run exactly the same search."""

from __future__ import annotations

CASES: dict[str, list[str]] = {
    # Hyperband on digits: max_epochs 9, factor 3 (one iteration: 3 brackets).
    "digits_hyperband": ["tuner=hyperband", "sweep.epochs=9", "tuner.factor=3"],
    # RandomSearch on digits: 12 trials x 5 epochs.
    "digits_random": ["tuner=random", "sweep.max_trials=12", "sweep.epochs=5"],
    # A longer sweep (RandomSearch 48 trials x 20 epochs on digits, ~4-5 min of plain keras-tuner):
    # where the fixed cost of Ray and MLflow stops mattering. Not in the default set (25 min for 3 reps).
    "digits_random_long": ["tuner=random", "sweep.max_trials=48", "sweep.epochs=20"],
    # The housing regression MLP: 8 trials x 10 epochs.
    "housing_random": [
        "hypermodel=mlp_regressor", "data=california_housing", "tuner=random",
        "sweep.max_trials=8", "sweep.epochs=10",
    ],
    # Long sweeps for early stopping (bench/asha.py runs each with and without scheduler=asha).
    "digits_random_32x20": ["tuner=random", "sweep.max_trials=32", "sweep.epochs=20"],
    "housing_random_24x30": [
        "hypermodel=mlp_regressor", "data=california_housing", "tuner=random",
        "sweep.max_trials=24", "sweep.epochs=30",
    ],
    # Trivial trials for the per-trial overhead: 1 epoch, one layer, tiny data.
    "overhead": [
        "tuner=random", "sweep.max_trials=50", "sweep.epochs=1", "hypermodel.space.n_hidden.max=1",
        "hypermodel.space.n_neurons.max=16", "data.val_fraction=0.1", "data.test_fraction=0.8",
    ],
}


def search_inputs(overrides: list[str]) -> tuple:
    """The validated config, the dataset and the HyperModel of a search, as ``ktsweep run`` builds them.

    For the contenders that are not ktsweep (plain keras-tuner, Optuna), so that they search the same
    space on the same split. Imports TensorFlow (through the HyperModel).
    """
    from hydra.utils import instantiate

    from ktsweep.conf.compose import compose, validate
    from ktsweep.search.inputs import load_data

    config = validate(compose(overrides))
    dataset = load_data(config)
    hypermodel = instantiate(config.hypermodel, _convert_="object", data_spec=dataset.spec)
    return config, dataset, hypermodel
