"""The classic MLPs: a stack of ``n_hidden`` Dense(``n_neurons``) layers, tuned lr and optimizer."""

from __future__ import annotations

from typing import Any

import keras
import keras_tuner as kt

from ktsweep.conf.schema import FitSpace, MLPSpace
from ktsweep.core.errors import FatalError
from ktsweep.hypermodels.base import SweepHyperModel
from ktsweep.hypermodels.space import declare

OPTIMIZERS = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam}


class _MLP(SweepHyperModel):
    def __init__(
        self, *, space: MLPSpace, normalize: bool = False, lr_decay_steps: int = 0, lr_decay: str = "inverse_time",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.space = space
        self.normalize = normalize
        self.lr_decay_steps = lr_decay_steps
        self.lr_decay = lr_decay

    def declare(self, hp: kt.HyperParameters) -> dict[str, Any]:
        return {
            name: declare(hp, name, getattr(self.space, name))
            for name in ("n_hidden", "n_neurons", "learning_rate", "optimizer")
        }

    def hidden_stack(self, values: dict[str, Any]) -> keras.Sequential:
        layers: list[keras.layers.Layer] = [keras.Input(shape=self.spec.input_shape), keras.layers.Flatten()]
        if self.normalize:
            if not self.spec.feature_mean:  # a pipeline's data: no statistics were computed before the trials
                raise FatalError(
                    f"{type(self).__name__} normalize=true needs the training split's statistics, which a tf.data or "
                    "PyDataset split does not give; set hypermodel.normalize=false (normalize in the pipeline), "
                    "or give arrays"
                )
            layers.append(keras.layers.Normalization(mean=self.spec.feature_mean, variance=self.spec.feature_var))
        layers += [keras.layers.Dense(values["n_neurons"], activation="relu") for _ in range(values["n_hidden"])]
        return keras.Sequential(layers)

    def optimizer(self, values: dict[str, Any]) -> keras.optimizers.Optimizer:
        rate: Any = values["learning_rate"]
        if self.lr_decay_steps and self.lr_decay == "cosine":  # the last epochs fine-tune at 1% of the rate
            rate = keras.optimizers.schedules.CosineDecay(rate, decay_steps=self.lr_decay_steps, alpha=0.01)
        elif self.lr_decay_steps:
            rate = keras.optimizers.schedules.InverseTimeDecay(rate, decay_steps=self.lr_decay_steps, decay_rate=1.0)
        return OPTIMIZERS[values["optimizer"]](learning_rate=rate)


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


class FitTunedMLPClassifier(MLPClassifier):
    """Also tunes training: ``hp.Boolean("normalize")`` and the ``batch_size`` given to ``fit()``.

    The normalization is a layer of the model (so the saved model takes raw inputs);
    the batch size is applied in ``fit``, as in Keras Tuner's ``HyperModel.fit`` examples.
    The engine needs no special case: the hyperparameters are declared with the rest.
    """

    def __init__(self, *, fit_space: FitSpace, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fit_space = fit_space

    def declare(self, hp: kt.HyperParameters) -> dict[str, Any]:
        values = super().declare(hp)
        values["normalize"] = hp.Boolean("normalize", default=self.fit_space.normalize)
        values["batch_size"] = declare(hp, "batch_size", self.fit_space.batch_size)
        return values

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        self.normalize = self.declare(hp)["normalize"]
        return super().build(hp)

    def fit(self, hp: kt.HyperParameters, model: keras.Model, *args: Any, **kwargs: Any) -> Any:
        kwargs["batch_size"] = self.declare(hp)["batch_size"]
        return model.fit(*args, **kwargs)
