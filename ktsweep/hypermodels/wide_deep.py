"""Wide & deep regressors (Géron, ch. 10): two inputs, a main and an auxiliary output.

The wide columns reach the output directly (through a concatenation with the
deep stack's last layer), so simple patterns need not travel through the stack;
the auxiliary output, read from the stack alone, makes the stack useful on its
own and regularises it (its loss weighs ``loss_weights.aux``). The same network
exists twice: built with the functional API (``WideDeepRegressor``) and as a
subclassed ``keras.Model`` (``SubclassedWideDeepRegressor``), which is
registered for serialization so a saved copy loads with ``safe_mode=True``.

Both take the data's feature rows like every other model; ``model_inputs``
splits them into the ``wide`` and ``deep`` inputs, ``model_targets`` repeats the
label for both outputs.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import keras
import keras_tuner as kt
import numpy as np

from ktsweep.hypermodels.mlp import _MLP

OUTPUTS = ("main", "aux")


class WideDeepRegressor(_MLP):
    """Functional wide & deep: depth, width, learning rate and optimizer are tuned (the MLP space)."""

    def __init__(
        self, *, wide_features: Sequence[int], deep_features: Sequence[int], loss_weights: Any, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.wide = tuple(int(i) for i in wide_features)
        self.deep = tuple(int(i) for i in deep_features)
        self.loss_weights = {name: float(_field(loss_weights, name)) for name in OUTPUTS}
        if self.data_spec is not None:
            n_features = int(np.prod(self.spec.input_shape))
            for key, columns in (("wide_features", self.wide), ("deep_features", self.deep)):
                if max(columns) >= n_features:
                    raise ValueError(
                        f"hypermodel.{key}={list(columns)} names column {max(columns)}, but the data has "
                        f"{n_features} features (0..{n_features - 1}); pick columns in range"
                    )

    def model_inputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return {"wide": x[:, list(self.wide)], "deep": x[:, list(self.deep)]}

    def model_targets(self, y: np.ndarray) -> dict[str, np.ndarray]:
        return {name: y for name in OUTPUTS}

    def normalization(self, columns: tuple[int, ...]) -> Optional[dict[str, list[float]]]:
        """The training split's statistics of these columns (None: no normalization)."""
        if not self.normalize:
            return None
        return {
            "mean": [self.spec.feature_mean[i] for i in columns],
            "variance": [self.spec.feature_var[i] for i in columns],
        }

    def compile(self, model: keras.Model, values: dict[str, Any]) -> keras.Model:
        model.compile(
            optimizer=self.optimizer(values),
            loss={name: "mse" for name in OUTPUTS},
            loss_weights=self.loss_weights,
            metrics={name: [keras.metrics.RootMeanSquaredError(name="rmse")] for name in OUTPUTS},
        )
        return model

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        values = self.declare(hp)
        wide_in = keras.Input((len(self.wide),), name="wide")
        deep_in = keras.Input((len(self.deep),), name="deep")
        wide, deep = _normalize(wide_in, self.normalization(self.wide)), _normalize(deep_in, self.normalization(self.deep))
        for _ in range(values["n_hidden"]):
            deep = keras.layers.Dense(values["n_neurons"], activation="relu")(deep)
        main = keras.layers.Dense(1, name="main")(keras.layers.Concatenate()([wide, deep]))
        aux = keras.layers.Dense(1, name="aux")(deep)
        model = keras.Model({"wide": wide_in, "deep": deep_in}, {"main": main, "aux": aux}, name="wide_deep")
        return self.compile(model, values)


class SubclassedWideDeepRegressor(WideDeepRegressor):
    """The same network and search space, as a subclassed ``keras.Model`` (``WideDeepModel``)."""

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        values = self.declare(hp)
        model = WideDeepModel(
            n_hidden=values["n_hidden"],
            n_neurons=values["n_neurons"],
            wide_norm=self.normalization(self.wide),
            deep_norm=self.normalization(self.deep),
        )
        model.build({"wide": (None, len(self.wide)), "deep": (None, len(self.deep))})
        return self.compile(model, values)


@keras.saving.register_keras_serializable(package="ktsweep")
class WideDeepModel(keras.Model):
    """Subclassed wide & deep; ``get_config`` holds everything needed to rebuild it on load."""

    def __init__(
        self,
        n_hidden: int = 2,
        n_neurons: int = 30,
        wide_norm: Optional[dict[str, list[float]]] = None,
        deep_norm: Optional[dict[str, list[float]]] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.n_hidden, self.n_neurons = n_hidden, n_neurons
        self.wide_norm, self.deep_norm = wide_norm, deep_norm
        self.wide_normalizer = keras.layers.Normalization(**wide_norm) if wide_norm else None
        self.deep_normalizer = keras.layers.Normalization(**deep_norm) if deep_norm else None
        self.hidden = [keras.layers.Dense(n_neurons, activation="relu") for _ in range(n_hidden)]
        self.concat = keras.layers.Concatenate()
        self.main_output = keras.layers.Dense(1, name="main")
        self.aux_output = keras.layers.Dense(1, name="aux")

    def build(self, input_shape: dict[str, tuple]) -> None:
        wide = (None, input_shape["wide"][-1])
        deep = (None, input_shape["deep"][-1])
        for normalizer, shape in ((self.wide_normalizer, wide), (self.deep_normalizer, deep)):
            if normalizer is not None:
                normalizer.build(shape)
        for layer in self.hidden:
            layer.build(deep)
            deep = (None, layer.units)
        self.concat.build([wide, deep])
        self.main_output.build((None, wide[-1] + deep[-1]))
        self.aux_output.build(deep)
        self.built = True

    def call(self, inputs: dict[str, Any]) -> dict[str, Any]:
        wide, deep = inputs["wide"], inputs["deep"]
        if self.wide_normalizer is not None:
            wide = self.wide_normalizer(wide)
        if self.deep_normalizer is not None:
            deep = self.deep_normalizer(deep)
        for layer in self.hidden:
            deep = layer(deep)
        return {"main": self.main_output(self.concat([wide, deep])), "aux": self.aux_output(deep)}

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "n_hidden": self.n_hidden,
            "n_neurons": self.n_neurons,
            "wide_norm": self.wide_norm,
            "deep_norm": self.deep_norm,
        }


def _normalize(tensor: Any, stats: Optional[dict[str, list[float]]]) -> Any:
    return tensor if stats is None else keras.layers.Normalization(**stats)(tensor)


def _field(node: Any, name: str) -> Any:
    """A config node's field whether it arrives as a dataclass or a dict."""
    return node[name] if isinstance(node, dict) else getattr(node, name)
