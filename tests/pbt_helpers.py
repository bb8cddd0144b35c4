"""What the PBT tests run in the workers: a small digits model whose learning rate matters, and a
callback that writes what each epoch left in the model (a checksum of its weights, the optimizer's
learning rate and step), so a test can check an exploit from the weights themselves."""

from __future__ import annotations

import json
import os
import time
from typing import Any, Optional

import keras
import keras_tuner as kt
import numpy as np


def build_model(hp: Any) -> Any:
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(hp.Int("units", 8, 32, step=8), activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    rate = hp.Float("learning_rate", 1e-5, 3e-1, sampling="log")
    model.compile(keras.optimizers.Adam(rate), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def checksum(weights: list[np.ndarray]) -> float:
    return float(sum(np.sum(np.asarray(w, dtype=np.float64) * (i + 1)) for i, w in enumerate(weights)))


class WeightLog(keras.callbacks.Callback):
    """One JSON line per event: ``begin`` (before an epoch) and ``end`` (after it), per trial.
    ``wait_for``: after each epoch a trial waits (up to a minute) until that many trials have ended it,
    so the population trains in step however fast the backend is (else a trial may finish alone)."""

    def __init__(self, directory: str, wait_for: int = 0) -> None:
        super().__init__()
        self.directory, self.wait_for = directory, wait_for

    def _write(self, event: str, epoch: int) -> None:
        from ray import tune

        optimizer = self.model.optimizer
        line = {"trial": tune.get_context().get_trial_name().removeprefix("trial_"), "event": event, "epoch": epoch,
                "weights": checksum(self.model.get_weights()),
                "learning_rate": float(np.asarray(optimizer.learning_rate)),
                "iterations": int(np.asarray(optimizer.iterations)), "pid": os.getpid()}
        with open(os.path.join(self.directory, "weights.jsonl"), "a") as fh:
            fh.write(json.dumps(line) + "\n")

    def on_epoch_begin(self, epoch: int, logs: Optional[dict] = None) -> None:
        self._write("begin", epoch)

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        self._write("end", epoch)
        deadline = time.time() + 60
        while self.wait_for and time.time() < deadline:
            ended = {line["trial"] for line in read_log(self.directory) if line["event"] == "end" and line["epoch"] == epoch}
            if len(ended) >= self.wait_for:
                break
            time.sleep(0.05)


def read_log(directory: str) -> list[dict[str, Any]]:
    with open(os.path.join(directory, "weights.jsonl")) as fh:
        return [json.loads(line) for line in fh]


class LoggedHyperModel(kt.HyperModel):
    """``build_model`` whose ``fit`` adds a ``WeightLog`` writing to ``$KTSWEEP_TEST_WEIGHT_LOG``: the
    same check through the CLI."""

    def build(self, hp: Any) -> Any:
        return build_model(hp)

    def fit(self, hp: Any, model: Any, *args: Any, callbacks: Optional[list] = None, **kwargs: Any) -> Any:
        callbacks = [*(callbacks or []), WeightLog(os.environ["KTSWEEP_TEST_WEIGHT_LOG"])]
        return model.fit(*args, callbacks=callbacks, **kwargs)
