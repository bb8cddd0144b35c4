"""The classic MLPs: a stack of ``n_hidden`` Dense(``n_neurons``) layers, tuned lr and optimizer."""

from __future__ import annotations

from typing import Any

import keras
import keras_tuner as kt

from conf.schema import MLPSpace
from hypermodels.base import SweepHyperModel
from hypermodels.space import declare

OPTIMIZERS = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam}


class _MLP(SweepHyperModel):
    def __init__(self, *, space: MLPSpace, normalize: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.space = space
        self.normalize = normalize

    def declare(self, hp: kt.HyperParameters) -> dict[str, Any]:
        return {
            name: declare(hp, name, getattr(self.space, name))
            for name in ("n_hidden", "n_neurons", "learning_rate", "optimizer")
        }

    def hidden_stack(self, values: dict[str, Any]) -> keras.Sequential:
        layers: list[keras.layers.Layer] = [keras.Input(shape=self.spec.input_shape), keras.layers.Flatten()]
        if self.normalize:
            layers.append(keras.layers.Normalization(mean=self.spec.feature_mean, variance=self.spec.feature_var))
        layers += [keras.layers.Dense(values["n_neurons"], activation="relu") for _ in range(values["n_hidden"])]
        return keras.Sequential(layers)

    @staticmethod
    def optimizer(values: dict[str, Any]) -> keras.optimizers.Optimizer:
        return OPTIMIZERS[values["optimizer"]](learning_rate=values["learning_rate"])


class MLPClassifier(_MLP):
    """Softmax over ``n_classes``; sparse integer labels; judged by ``val_accuracy``."""

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        values = self.declare(hp)
        model = self.hidden_stack(values)
        model.add(keras.layers.Dense(self.spec.n_classes, activation="softmax"))
        model.compile(
            optimizer=self.optimizer(values),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return model


class MLPRegressor(_MLP):
    """One linear output, MSE loss, RMSE metric."""

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        values = self.declare(hp)
        model = self.hidden_stack(values)
        model.add(keras.layers.Dense(1))
        model.compile(
            optimizer=self.optimizer(values),
            loss="mse",
            metrics=[keras.metrics.RootMeanSquaredError(name="rmse")],
        )
        return model
