"""A HyperModel whose trials the Pareto tests control: its ``fit`` trains nothing and returns a quality
fixed per ``units``, while the worker measures the model's real parameter count (75 * units + 10)."""

from __future__ import annotations

from typing import Any

import keras
import keras_tuner as kt

QUALITY = {1: 0.5, 2: 0.7, 3: 0.6, 4: 0.9, 5: 0.95}  # units 3 is beaten by units 2 on both objectives


def params_of(units: int) -> int:
    return 64 * units + units + units * 10 + 10  # Dense(64 -> units) + Dense(units -> 10)


class Controlled(kt.HyperModel):
    def build(self, hp: Any) -> Any:
        units = hp.Choice("units", sorted(QUALITY))
        model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(units, activation="relu"),
                                  keras.layers.Dense(10, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy")
        return model

    def fit(self, hp: Any, model: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
        return {"val_quality": QUALITY[hp.get("units")]}


class Landscape(kt.HyperModel):
    """Two hyperparameters, two conflicting objectives computed from them (for the NSGA-II oracle)."""

    def build(self, hp: Any) -> Any:
        hp.Float("x", 0.0, 1.0)
        hp.Int("width", 1, 8)
        model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy")
        return model

    def fit(self, hp: Any, model: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
        x, width = hp.get("x"), hp.get("width")
        return {"val_gain": x * width, "val_cost": (1.0 - x) ** 2 + width / 8}
