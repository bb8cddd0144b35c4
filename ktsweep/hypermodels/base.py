"""The contract between a search space and the sweep engine.

A ``SweepHyperModel`` is a Keras Tuner ``HyperModel`` that also knows what
data it is fitted on (``DataSpec``) and can declare its hyperparameters
without building a model, so the driver fills the oracle's space cheaply.
Subclasses implement ``declare`` and ``build``; ``fit`` is optional.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import keras_tuner as kt
import numpy as np


@dataclass(frozen=True)
class DataSpec:
    """What a model builder needs to know about the data (not the data itself)."""

    input_shape: tuple[int, ...]
    task: str  # "classification" | "regression"
    n_classes: int = 0
    feature_names: tuple[str, ...] = ()
    # Per-feature mean and variance of the training split, for a Normalization layer
    # (computed once on the driver, so no trial adapts on data it should not see).
    feature_mean: tuple[float, ...] = ()
    feature_var: tuple[float, ...] = ()


class SweepHyperModel(kt.HyperModel):
    """Base of ktsweep's HyperModels; user HyperModels may subclass it or plain ``kt.HyperModel``."""

    def __init__(
        self,
        *,
        objective: str,
        direction: str,
        data_spec: Optional[DataSpec] = None,
        name: Optional[str] = None,
    ) -> None:
        super().__init__(name=name or type(self).__name__, tunable=True)
        self.objective = objective
        self.direction = direction
        self.data_spec = data_spec

    @property
    def spec(self) -> DataSpec:
        if self.data_spec is None:
            raise RuntimeError(f"{type(self).__name__} was built without a data_spec")
        return self.data_spec

    def declare(self, hp: kt.HyperParameters) -> dict[str, Any]:
        """Register this model's hyperparameters on ``hp`` and return their values."""
        raise NotImplementedError

    def declare_hyperparameters(self, hp: kt.HyperParameters) -> None:
        self.declare(hp)

    # A model with several inputs or outputs (wide & deep) sees the same feature
    # rows as every other model; these two map them to what ``build``'s model takes,
    # so the engine, the final evaluation and the registry need no special case.

    def model_inputs(self, x: np.ndarray) -> Any:
        """Feature rows -> the model's input (an array, or a dict keyed by input name)."""
        return x

    def model_targets(self, y: np.ndarray) -> Any:
        """Labels -> the model's targets (an array, or a dict keyed by output name)."""
        return y


def model_inputs(hypermodel: kt.HyperModel, x: np.ndarray) -> Any:
    """``hypermodel.model_inputs(x)``, also for plain Keras Tuner HyperModels (which take ``x`` as is)."""
    mapper = getattr(hypermodel, "model_inputs", None)
    return x if mapper is None else mapper(x)


def model_targets(hypermodel: kt.HyperModel, y: np.ndarray) -> Any:
    mapper = getattr(hypermodel, "model_targets", None)
    return y if mapper is None else mapper(y)
