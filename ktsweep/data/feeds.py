"""Each split as ``model.fit`` takes it: arrays ``(x, y)``, or a pipeline that yields batches.

A pipeline is what ``tuner.search`` and ``fit`` take besides arrays: a ``tf.data.Dataset``
(``keras.utils.image_dataset_from_directory``), a ``keras.utils.PyDataset``, or a Python
generator (used up by one ``fit``: its loader runs again for every trial). The engine,
the final retrain and evaluation and the registry see only ``Feed`` and ``Feeds``, so
arrays held by the driver and pipelines a worker builds take one code path. (Keras and Keras Tuner are
imported where used: the CLI builds its probe's ``WorkerData`` while the driver imports them.)
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ktsweep.core.errors import UsageError


def is_tf_dataset(value: Any) -> bool:
    """A ``tf.data.Dataset``, without importing TensorFlow (only a TensorFlow user's object can be one)."""
    return any(cls.__module__.startswith("tensorflow.") and cls.__name__ == "DatasetV2" for cls in type(value).__mro__)


def is_py_dataset(value: Any) -> bool:
    return any(cls.__name__ == "PyDataset" and cls.__module__.startswith("keras.") for cls in type(value).__mro__)


def is_pipeline(value: Any) -> bool:
    return is_tf_dataset(value) or is_py_dataset(value) or isinstance(value, types.GeneratorType)


def to_numpy(value: Any) -> Any:
    """Tensors of any backend (nested as Keras nests inputs) as NumPy arrays."""
    import keras

    return keras.tree.map_structure(lambda part: np.asarray(part), value)


def first_batch(pipeline: Any) -> tuple[Any, Any]:
    """The first ``(x, y)`` batch of a pipeline, as NumPy (a generator loses it: only probes call this)."""
    if is_py_dataset(pipeline):
        batch = pipeline[0]
    elif is_tf_dataset(pipeline):
        batch = next(iter(pipeline.take(1)))
    else:
        batch = next(pipeline)
    if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
        raise UsageError(
            f"a {type(pipeline).__name__} must yield (x, y) or (x, y, sample_weight) batches to train on; "
            f"it yields {type(batch).__name__}"
        )
    return to_numpy(batch[0]), to_numpy(batch[1])


def rows(value: Any, count: int) -> Any:
    import keras

    return keras.tree.map_structure(lambda array: array[:count], value)


@dataclass
class Feed:
    """One split: arrays (``y`` given) or a pipeline in ``x`` that yields its own targets (``y`` None)."""

    x: Any
    y: Any = None

    @property
    def pipeline(self) -> bool:
        return self.y is None

    def fit_args(self, hypermodel: Any) -> tuple[Any, Any]:
        """``(x, y)`` for ``fit``/``evaluate``: arrays mapped to the model's inputs and outputs (wide & deep
        splits its columns); a pipeline as it is (it yields what the user's model takes)."""
        from ktsweep.hypermodels.base import model_inputs, model_targets

        if self.pipeline:
            return self.x, None
        return model_inputs(hypermodel, self.x), model_targets(hypermodel, self.y)

    def validation(self, hypermodel: Any) -> Any:
        """As ``fit``'s ``validation_data`` takes it."""
        x, y = self.fit_args(hypermodel)
        return x if y is None else (x, y)

    def sample(self, hypermodel: Any, count: int = 1) -> tuple[Any, Any]:
        """The first ``count`` rows as the model takes them (to build a model, or a signature)."""
        from ktsweep.hypermodels.base import model_inputs, model_targets

        if self.pipeline:
            x, y = first_batch(self.x)
            return rows(x, count), rows(y, count)
        return model_inputs(hypermodel, rows(self.x, count)), model_targets(hypermodel, rows(self.y, count))

    def __len__(self) -> int:
        """Rows of arrays; batches of a pipeline that knows them (0 if it does not)."""
        if not self.pipeline:
            import keras

            return len(keras.tree.flatten(self.x)[0])
        try:
            return max(0, int(len(self.x)))
        except (TypeError, ValueError):
            return 0


@dataclass
class Feeds:
    """Train, validation and (if any) test, as the trials, the final retrain and the evaluation use them."""

    train: Feed
    val: Feed
    test: Optional[Feed] = None

    def train_and_val(self) -> Feed:
        """Training and validation together, for the final retrain: arrays end to end, a ``tf.data``
        dataset ``concatenate``d, two ``PyDataset``s chained (batches of one, then of the other)."""
        import itertools

        import keras

        train, val = self.train, self.val
        if not train.pipeline and not val.pipeline:
            join = lambda a, b: np.concatenate([a, b])  # noqa: E731
            return Feed(keras.tree.map_structure(join, train.x, val.x), keras.tree.map_structure(join, train.y, val.y))
        if is_tf_dataset(train.x) and is_tf_dataset(val.x) and _finite(train.x):
            return Feed(train.x.concatenate(val.x))
        if is_py_dataset(train.x) and is_py_dataset(val.x) and train.x.num_batches is not None:
            return Feed(chained(train.x, val.x))
        if isinstance(train.x, types.GeneratorType) and isinstance(val.x, types.GeneratorType):
            return Feed(itertools.chain(train.x, val.x))  # sweep.steps_per_epoch still counts its batches
        raise UsageError(
            f"sweep.final.retrain=true trains on train + validation, which cannot join a {type(train.x).__name__} "
            f"and a {type(val.x).__name__} (an endless training split never reaches the validation one); give both "
            "splits as the same finite kind, or set sweep.final.retrain=false"
        )


def _finite(dataset: Any) -> bool:
    import tensorflow as tf

    return int(dataset.cardinality()) != int(tf.data.INFINITE_CARDINALITY)


def chained(first: Any, second: Any) -> Any:
    """Two ``PyDataset``s as one: the batches of the first, then those of the second."""
    import keras

    class Chained(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.parts = (first, second)

        def __len__(self) -> int:
            return len(first) + len(second)

        def __getitem__(self, index: int) -> Any:
            return first[index] if index < len(first) else second[index - len(first)]

        def on_epoch_end(self) -> None:
            for part in self.parts:
                part.on_epoch_end()

    return Chained()
