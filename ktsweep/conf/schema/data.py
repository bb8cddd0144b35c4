"""The ``data`` group: loaders whose ``_target_`` returns a ``ktsweep.data.loaders.Dataset``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from omegaconf import MISSING

from ktsweep.conf.schema.base import at_least, one_of, require

LOAD_IN = ("driver", "workers")
COLOR_MODES = ("rgb", "grayscale", "rgba")


@dataclass
class DataConf:
    """A loader (``_target_``) returning a ``ktsweep.data.loaders.Dataset``, arrays, or pipelines."""

    _target_: str = MISSING
    name: str = MISSING
    seed: int = 42
    # driver: the loader runs once in the driver and its arrays (pipelines read into arrays) go to Ray's
    # object store; workers: each worker calls it itself, once per process (data/pipelines.py)
    load_in: str = "driver"

    def check(self) -> None:
        one_of("data.load_in", self.load_in, LOAD_IN)


@dataclass
class SplitDataConf(DataConf):
    """Data without a given split: validation and test are carved out, seeded."""

    val_fraction: float = 0.2
    test_fraction: float = 0.2

    def check(self) -> None:
        super().check()
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
        super().check()
        require(0 < self.val_size < 60000, f"data.val_size must be in 1..59999; got {self.val_size}")


@dataclass
class ImageFolderConf(DataConf):
    """One subfolder per class, read as ``keras.utils.image_dataset_from_directory`` reads it, in each worker."""

    _target_: str = "ktsweep.data.images.load_image_folder"
    name: str = "image_folder"
    path: str = MISSING
    image_size: list[int] = field(default_factory=lambda: [64, 64])  # height, width: every image is resized to it
    color_mode: str = "rgb"  # rgb | grayscale | rgba
    batch_size: int = 32  # the pipeline's batches (sweep.batch_size applies to arrays only)
    validation_split: float = 0.2  # of path's images, seeded
    test_path: Optional[str] = None  # a second folder with the same classes, evaluated once at the end
    cache: bool = True  # each worker keeps the decoded images after its first epoch (tf.data's cache())
    load_in: str = "workers"

    def check(self) -> None:
        super().check()
        require(len(self.image_size) == 2 and min(self.image_size) >= 1,
                f"data.image_size must be [height, width] of positive pixels; got {list(self.image_size)}")
        one_of("data.color_mode", self.color_mode, COLOR_MODES)
        at_least("data.batch_size", self.batch_size, 1)
        require(0.0 < self.validation_split < 1.0,
                f"data.validation_split must be in (0, 1): the objective is measured on it; got {self.validation_split}")
