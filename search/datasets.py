"""Dataset loaders named by ``conf/data/*`` (``_target_``); each returns a ``Dataset``.

Loaders run once, on the driver; the arrays then go into Ray's object store
so every trial reads the same copy without re-reading files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hypermodels.base import DataSpec


@dataclass
class Dataset:
    """Train / validation / test splits as numpy arrays, plus what models need to know."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    task: str
    n_classes: int = 0
    feature_names: tuple[str, ...] = field(default_factory=tuple)

    @property
    def spec(self) -> DataSpec:
        return DataSpec(
            input_shape=tuple(self.x_train.shape[1:]),
            task=self.task,
            n_classes=self.n_classes,
            feature_names=self.feature_names,
        )

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.x_train), "val": len(self.x_val), "test": len(self.x_test)}


def split(
    x: np.ndarray, y: np.ndarray, *, val_fraction: float, test_fraction: float, seed: int, stratify: bool
) -> tuple[np.ndarray, ...]:
    """Seeded train/val/test split (stratified for classification)."""
    from sklearn.model_selection import train_test_split

    strat = y if stratify else None
    x_rest, x_test, y_rest, y_test = (x, x[:0], y, y[:0])
    if test_fraction > 0:
        x_rest, x_test, y_rest, y_test = train_test_split(
            x, y, test_size=test_fraction, random_state=seed, stratify=strat
        )
    val_share = val_fraction / (1.0 - test_fraction)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_share, random_state=seed, stratify=y_rest if stratify else None
    )
    return x_train, y_train, x_val, y_val, x_test, y_test


def load_digits(*, name: str, val_fraction: float, test_fraction: float, seed: int) -> Dataset:
    """scikit-learn's 8x8 digits, pixels scaled to [0, 1]: ships with scikit-learn, no download."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = (bunch.data / 16.0).astype("float32")
    y = bunch.target.astype("int64")
    parts = split(x, y, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed, stratify=True)
    return Dataset(name, *parts, task="classification", n_classes=10, feature_names=tuple(bunch.feature_names))
