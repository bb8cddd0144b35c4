"""One sweep with plain keras-tuner (``tuner.search``): the baseline ktsweep is measured against.

Same HyperModel class, same oracle and seed, same data split, epochs and batch
size as ``ktsweep run`` with the given overrides. Prints one JSON line.
    python bench/plain_keras_tuner.py tuner=random sweep.max_trials=12 sweep.epochs=5
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(overrides: list[str]) -> None:
    started = time.perf_counter()
    import keras_tuner as kt
    from cases import search_inputs

    from ktsweep.search.oracles import build_oracle

    config, dataset, hypermodel = search_inputs(overrides)
    objective = kt.Objective(config.sweep.objective, config.sweep.direction)
    with tempfile.TemporaryDirectory() as directory:
        if config.tuner._target_.endswith("HyperbandOracle"):
            tuner = kt.Hyperband(
                hypermodel, objective=objective, max_epochs=config.tuner.max_epochs, factor=config.tuner.factor,
                hyperband_iterations=config.tuner.hyperband_iterations, seed=config.tuner.seed,
                directory=directory, project_name="plain", overwrite=True,
            )
        else:  # the same oracle object ktsweep builds, driven by Keras Tuner's own Tuner
            oracle = build_oracle(
                config.tuner, objective=config.sweep.objective, direction=config.sweep.direction,
                max_trials=config.sweep.max_trials, hypermodel=hypermodel,
                directory=os.path.join(directory, "oracle"),
            )
            tuner = kt.Tuner(oracle=oracle, hypermodel=hypermodel, directory=directory, project_name="plain", overwrite=True)
        search_started = time.perf_counter()
        tuner.search(
            dataset.x_train, dataset.y_train,
            validation_data=(dataset.x_val, dataset.y_val),
            epochs=config.sweep.epochs, batch_size=config.sweep.batch_size, verbose=0,
        )
        search_seconds = time.perf_counter() - search_started
        best = tuner.oracle.get_best_trials(1)[0]
        trials = len(tuner.oracle.trials)
    print(json.dumps({"seconds_inside": time.perf_counter() - started, "search_seconds": search_seconds,
                      "best": float(best.score), "trials": trials}))


if __name__ == "__main__":
    main(sys.argv[1:])
