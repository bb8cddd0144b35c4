"""The ``data`` group: loaders whose ``_target_`` returns a ``ktsweep.data.loaders.Dataset``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from omegaconf import MISSING

from ktsweep.conf.schema.base import require


@dataclass
class DataConf:
    """A loader (``_target_``) returning a ``ktsweep.data.loaders.Dataset``."""

    _target_: str = MISSING
    name: str = MISSING
    seed: int = 42


@dataclass
class SplitDataConf(DataConf):
    """Data without a given split: validation and test are carved out, seeded."""

    val_fraction: float = 0.2
    test_fraction: float = 0.2

    def check(self) -> None:
        for key in ("val_fraction", "test_fraction"):
            value = getattr(self, key)
            require(0.0 <= value < 1.0, f"data.{key} must be in [0, 1); got {value}")
        require(
            self.val_fraction + self.test_fraction < 1.0,
            "data.val_fraction + data.test_fraction must leave some training data",
        )
        require(self.val_fraction > 0, "data.val_fraction must be > 0: the objective is measured on it")


def _check_task(task: Optional[str]) -> None:
    require(
        task in (None, "classification", "regression"),
        f"data.task must be classification, regression or null; got data.task={task!r}",
    )


@dataclass
class DigitsConf(SplitDataConf):
    _target_: str = "ktsweep.data.loaders.load_digits"
    name: str = "digits"


@dataclass
class HousingConf(SplitDataConf):
    _target_: str = "ktsweep.data.loaders.load_california_housing"
    name: str = "california_housing"
    path: Optional[str] = None  # None: the copy bundled with ktsweep (ktsweep/data/)
    one_hot_ocean: bool = False


@dataclass
class TableConf(SplitDataConf):
    """Any CSV or Parquet table."""

    _target_: str = "ktsweep.data.loaders.load_table"
    name: str = "table"
    path: str = MISSING
    target: str = MISSING
    features: Optional[list[str]] = None  # None: every column but the target
    categorical: Optional[list[str]] = None  # None: the non-numeric feature columns
    task: Optional[str] = None  # classification | regression; None: inferred from the target

    def check(self) -> None:
        super().check()
        _check_task(self.task)


@dataclass
class NpzConf(SplitDataConf):
    """Your own arrays in a NumPy ``.npz``: ``x_train``, ``y_train`` and optionally ``x_val``/``y_val``,
    ``x_test``/``y_test`` (missing splits are cut from train with the fractions)."""

    _target_: str = "ktsweep.data.loaders.load_npz"
    name: str = "npz"
    path: str = MISSING
    task: Optional[str] = None  # classification | regression; None: inferred from y

    def check(self) -> None:
        super().check()
        _check_task(self.task)


@dataclass
class FashionConf(DataConf):
    """Keras' Fashion-MNIST: 60k train (the last ``val_size`` for validation), 10k test."""

    _target_: str = "ktsweep.data.loaders.load_fashion_mnist"
    name: str = "fashion_mnist"
    val_size: int = 5000
    cache_dir: Optional[str] = None  # None: $KERAS_HOME or ~/.keras (Keras' own cache)

    def check(self) -> None:
        require(0 < self.val_size < 60000, f"data.val_size must be in 1..59999; got {self.val_size}")
