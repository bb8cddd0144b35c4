"""Turn the config's range objects into Keras Tuner hyperparameters."""

from __future__ import annotations

from typing import Any

import keras_tuner as kt

from ktsweep.conf.schema import Choice, FloatRange, IntRange


def declare(hp: kt.HyperParameters, name: str, spec: IntRange | FloatRange | Choice) -> Any:
    """One call per hyperparameter, whatever its kind: the space stays data, not code."""
    if isinstance(spec, IntRange):
        return hp.Int(name, spec.min, spec.max, step=spec.step, default=spec.default)
    if isinstance(spec, FloatRange):
        return hp.Float(name, spec.min, spec.max, sampling=spec.sampling, default=spec.default)
    if isinstance(spec, Choice):
        return hp.Choice(name, list(spec.values), default=spec.default)
    raise TypeError(f"{name}: expected IntRange, FloatRange or Choice, got {type(spec).__name__}")
