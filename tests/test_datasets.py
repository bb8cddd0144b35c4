"""Data loaders: the real files and formats, and one clear line for each bad input."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ktsweep.core.errors import UsageError
from ktsweep.data.loaders import bundled_housing_path, load_california_housing, load_fashion_mnist, load_table

HOUSING = Path(bundled_housing_path())  # ships inside the package
SPLIT = dict(val_fraction=0.15, test_fraction=0.2, seed=42)


def test_california_housing_classic_features() -> None:
    data = load_california_housing(name="h", **SPLIT)  # path=None: the bundled copy
    assert HOUSING.is_file() and HOUSING.name == "california_housing.csv.gz"
    assert sum(data.sizes().values()) == 20640
    assert data.feature_names == ("MedInc", "HouseAge", "AveRooms", "AveBedrms", "Population", "AveOccup", "Latitude", "Longitude")
    assert data.task == "regression" and data.x_train.shape[1] == 8
    assert 0.1 < data.y_train.min() and data.y_train.max() <= 5.00001  # units of 100k
    assert not np.isnan(data.x_train).any() and not np.isnan(data.x_test).any()  # 207 bedrooms imputed
    again = load_california_housing(name="h", path=str(HOUSING), **SPLIT)
    assert np.array_equal(again.y_test, data.y_test)  # seeded split
    with_ocean = load_california_housing(name="h", path=str(HOUSING), one_hot_ocean=True, **SPLIT)
    assert with_ocean.x_train.shape[1] == 13 and "ocean_INLAND" in with_ocean.feature_names


def make_table(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "size": rng.normal(100, 20, 200),
        "rooms": rng.integers(1, 6, 200).astype(float),
        "city": rng.choice(["north", "south", "east"], 200),
        "label": rng.choice(["cheap", "dear"], 200),
        "price": rng.normal(3, 1, 200),
    })
    frame.loc[::17, "size"] = np.nan
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False)
    return path


def test_table_classification_with_categoricals_and_missing_values(tmp_path: Path) -> None:
    path = make_table(tmp_path)
    data = load_table(name="t", path=str(path), target="label", features=["size", "rooms", "city"], **SPLIT)
    assert data.task == "classification" and data.n_classes == 2
    assert set(data.feature_names) == {"size", "rooms", "city_east", "city_north", "city_south"}
    assert not np.isnan(data.x_train).any() and not np.isnan(data.x_val).any()


def test_table_regression_from_parquet(tmp_path: Path) -> None:
    path = tmp_path / "table.parquet"
    pd.read_csv(make_table(tmp_path)).to_parquet(path)
    data = load_table(name="t", path=str(path), target="price", features=["size", "rooms"], **SPLIT)
    assert data.task == "regression" and data.y_train.dtype == np.float32


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(path="missing.csv", target="price"), r"data file not found: .*missing\.csv; set data\.path"),
        (dict(target="nope"), r"lacks column\(s\) nope; it has size, rooms, city, label, price"),
        (dict(target="label", task="regression"), r"target 'label' is not numeric .*set data\.task=classification"),
        (dict(path="empty.csv", target="price"), r"empty\.csv has no rows"),
    ],
)
def test_table_bad_inputs(kwargs: dict, message: str, tmp_path: Path) -> None:
    table = make_table(tmp_path)
    (tmp_path / "empty.csv").write_text("size,price\n")
    kwargs = {"path": str(table), **kwargs}
    if not kwargs["path"].startswith("/"):
        kwargs["path"] = str(tmp_path / kwargs["path"])
    with pytest.raises(UsageError, match=message):
        load_table(name="t", **SPLIT, **kwargs)


def write_idx(folder: Path, n_train: int, n_test: int) -> None:
    """Small IDX files in the Keras cache layout (the real ones need a download)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, count in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, count, dtype=np.uint8)
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as fh:
            fh.write(b"\x00" * 8 + labels.tobytes())
        with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as fh:
            fh.write(b"\x00" * 16 + images.tobytes())


def test_fashion_mnist_reads_the_keras_cache(tmp_path: Path) -> None:
    write_idx(tmp_path / "datasets" / "fashion-mnist", n_train=120, n_test=30)
    data = load_fashion_mnist(name="f", seed=0, val_size=20, cache_dir=str(tmp_path))
    assert data.sizes() == {"train": 100, "val": 20, "test": 30}
    assert data.x_train.shape[1:] == (28, 28) and 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    assert data.n_classes == 10 and data.feature_names[0] == "T-shirt/top"


def test_fashion_mnist_without_cache_or_network_says_where_to_put_the_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"put train-labels-idx1-ubyte\.gz, .* into .*/datasets/fashion-mnist"):
        load_fashion_mnist(name="f", seed=0, cache_dir=str(tmp_path))
