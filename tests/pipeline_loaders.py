"""Data loaders a user would write, run by each worker (``data.load_in=workers``); used by tests/test_pipelines.py.

Each call leaves a file named by its process id in ``calls_dir``, so a test can count the calls per process.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import numpy as np

CALLS = os.path.join(os.environ.get("TMPDIR", "/tmp"), "ktsweep-pipeline-calls")  # the workers inherit TMPDIR


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.data / 16.0).astype("float32"), bunch.target.astype("int64")


def _note_call(calls_dir: str) -> None:
    os.makedirs(calls_dir, exist_ok=True)
    open(os.path.join(calls_dir, f"{os.getpid()}-{uuid.uuid4().hex[:6]}"), "w").close()


def digits_tf_data(calls_dir: str = CALLS, batch_size: int = 64) -> Any:
    """Batched ``tf.data`` train / validation / test, with ``cache()`` and ``prefetch``, as a Keras user writes it."""
    import tensorflow as tf

    _note_call(calls_dir)
    x, y = _digits()

    def pipe(a: np.ndarray, b: np.ndarray) -> Any:
        return tf.data.Dataset.from_tensor_slices((a, b)).batch(batch_size).cache().prefetch(tf.data.AUTOTUNE)

    return pipe(x[:1100], y[:1100]), pipe(x[1100:1450], y[1100:1450]), pipe(x[1450:], y[1450:])


def digits_py_dataset(calls_dir: str = CALLS) -> Any:
    """``keras.utils.PyDataset`` splits (no TensorFlow needed on JAX or PyTorch)."""
    import keras

    from ktsweep import Splits

    _note_call(calls_dir)
    x, y = _digits()

    class Batches(keras.utils.PyDataset):
        def __init__(self, a: np.ndarray, b: np.ndarray) -> None:
            super().__init__()
            self.a, self.b = a, b

        def __len__(self) -> int:
            return (len(self.a) + 63) // 64

        def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
            return self.a[index * 64:(index + 1) * 64], self.b[index * 64:(index + 1) * 64]

    return Splits(Batches(x[:1100], y[:1100]), Batches(x[1100:1450], y[1100:1450]), Batches(x[1450:], y[1450:]),
                  class_names=[str(i) for i in range(10)])


def mismatched_shapes() -> Any:
    import tensorflow as tf

    x, y = _digits()
    return (tf.data.Dataset.from_tensor_slices((x[:100], y[:100])).batch(32),
            tf.data.Dataset.from_tensor_slices((x[100:200, :32], y[100:200])).batch(32))


def a_generator() -> Any:
    x, y = _digits()

    def batches() -> Any:
        while True:
            yield x[:64], y[:64]

    return batches(), batches()


def not_data() -> Any:
    return "digits"


def two_inputs_weighted(weight: float = 0.0) -> Any:
    """``({"wide", "deep"}, y, sample_weight)`` batches: what arrays cannot hold, given to fit() as they are."""
    import tensorflow as tf

    x, y = _digits()

    def pipe(part: slice) -> Any:
        features = {"wide": x[part, :8], "deep": x[part]}
        return tf.data.Dataset.from_tensor_slices((features, y[part], np.full(len(y[part]), weight, "float32"))).batch(50)

    return pipe(slice(0, 600)), pipe(slice(600, 900))
