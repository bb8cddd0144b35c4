"""One process on the Keras backend in ``KERAS_BACKEND``, as a user's: ``ktsweep run`` (Hyperband, trial
checkpoints, the final retrain and ensemble, the registry), ``ktsweep pull`` and ``ktsweep show``, then
``ktsweep.sweep`` on the user's own ``build_model(hp)`` and Keras Tuner tuner; prints, as its last line,
JSON of what this driver process loaded (``tests/test_backends.py`` reads it and the MLflow store).

    KERAS_BACKEND=jax python tests/backend_probe.py ROOT OUT
"""

from __future__ import annotations

import json
import sys

HYPERBAND = ["tuner=hyperband", "tuner.max_epochs=3", "tuner.factor=3", "sweep.trial_checkpoint_every=1",
             "sweep.final.retrain=true", "sweep.final.ensemble=2", "hypermodel.space.n_hidden.max=2",
             "hypermodel.space.n_neurons.max=32", "tracking.registered_model=probe-digits"]


def cli(*args: str) -> None:
    from ktsweep.cli.main import main

    try:
        main(list(args))
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise


def refusal(*args: str) -> str:
    """The one line a refused command prints (exit 2)."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            cli(*args)
        except SystemExit as exc:
            assert exc.code == 2, exc.code
    return err.getvalue().strip()


def build_model(hp):  # a user's own, unchanged: no ktsweep import
    import keras

    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(hp.Int("units", 16, 48, step=16), activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(keras.optimizers.Adam(hp.Float("lr", 1e-3, 1e-2, sampling="log")),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def main(root: str, out: str) -> None:
    cli("run", *HYPERBAND, f"sweep.root={root}", "sweep.name=hb")
    cli("pull", "hb", "--out", out, "--root", root)
    cli("show", "hb", "--root", root)
    refused = refusal("pull", "hb", "--out", f"{out}-saved", "--format", "saved_model", "--root", root)
    import keras
    import keras_tuner as kt
    from sklearn.datasets import load_digits

    import ktsweep

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    tuner = kt.RandomSearch(build_model, objective="val_accuracy", max_trials=2, seed=1, overwrite=True,
                            directory=f"{root}/kt", project_name="api")
    result = ktsweep.sweep(tuner, x[:1200], y[:1200], validation_data=(x[1200:], y[1200:]), epochs=2, root=root,
                           name="api", register=False)
    model = result.best_model()
    accuracy = float((model.predict(x[1200:], verbose=0).argmax(axis=1) == y[1200:]).mean())
    print(json.dumps({
        "backend": keras.config.backend(),
        "tensorflow_in_driver": "tensorflow" in sys.modules,
        "api_best_score": float(tuner.oracle.get_best_trials(1)[0].score),
        "api_best_model_accuracy": accuracy,
        "saved_model_refused": refused,
    }))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
