"""Dataset loaders named by ``conf/data/*`` (``_target_``); each returns a ``Dataset``.

Loaders run once, on the driver; the arrays then go into Ray's object store
so every trial reads the same copy without re-reading files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

from hypermodels.base import DataSpec
from search.errors import UsageError


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
        flat = self.x_train.reshape(len(self.x_train), -1)
        return DataSpec(
            input_shape=tuple(self.x_train.shape[1:]),
            task=self.task,
            n_classes=self.n_classes,
            feature_names=self.feature_names,
            feature_mean=tuple(float(v) for v in flat.mean(axis=0)),
            feature_var=tuple(float(v) for v in flat.var(axis=0)),
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


HOUSING_FEATURES = (
    "MedInc", "HouseAge", "AveRooms", "AveBedrms", "Population", "AveOccup", "Latitude", "Longitude",
)
HOUSING_COLUMNS = (
    "longitude", "latitude", "housing_median_age", "total_rooms", "total_bedrooms",
    "population", "households", "median_income", "median_house_value",
)


def load_california_housing(
    *, name: str, path: str, val_fraction: float, test_fraction: float, seed: int, one_hot_ocean: bool = False
) -> Dataset:
    """The housing CSV as the 8 classic features (scikit-learn's names), target in units of 100k.

    Missing ``total_bedrooms`` are filled with the training split's median only,
    so nothing about validation or test leaks into training.
    """
    import pandas as pd

    table = read_table(path, required=HOUSING_COLUMNS + (("ocean_proximity",) if one_hot_ocean else ()))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(table))
    n_test = int(round(len(table) * test_fraction))
    n_val = int(round(len(table) * val_fraction))
    parts = {
        "test": table.iloc[order[:n_test]],
        "val": table.iloc[order[n_test:n_test + n_val]],
        "train": table.iloc[order[n_test + n_val:]],
    }
    bedrooms = float(parts["train"]["total_bedrooms"].median())
    categories = sorted(table["ocean_proximity"].dropna().unique()) if one_hot_ocean else []

    def features(frame: "pd.DataFrame") -> tuple[np.ndarray, np.ndarray]:
        households = frame["households"].clip(lower=1)
        columns = {
            "MedInc": frame["median_income"],
            "HouseAge": frame["housing_median_age"],
            "AveRooms": frame["total_rooms"] / households,
            "AveBedrms": frame["total_bedrooms"].fillna(bedrooms) / households,
            "Population": frame["population"],
            "AveOccup": frame["population"] / households,
            "Latitude": frame["latitude"],
            "Longitude": frame["longitude"],
        }
        for category in categories:
            columns[f"ocean_{category}"] = (frame["ocean_proximity"] == category).astype("float32")
        x = pd.DataFrame(columns).to_numpy(dtype="float32")
        y = (frame["median_house_value"] / 100_000.0).to_numpy(dtype="float32")
        return x, y

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = (features(parts[k]) for k in ("train", "val", "test"))
    names = HOUSING_FEATURES + tuple(f"ocean_{c}" for c in categories)
    return Dataset(name, x_train, y_train, x_val, y_val, x_test, y_test, task="regression", feature_names=names)


def read_table(path: str, *, required: tuple[str, ...] = ()) -> "pd.DataFrame":
    """A CSV or Parquet file as a DataFrame; one clear line for a missing file, columns or rows."""
    import os

    import pandas as pd

    resolved = os.path.abspath(os.path.expanduser(path))
    if not os.path.exists(resolved):
        raise UsageError(f"data file not found: {resolved}; set data.path to the file's location")
    reader = pd.read_parquet if resolved.endswith((".parquet", ".pq")) else pd.read_csv
    try:
        table = reader(resolved)
    except Exception as exc:  # pandas raises many parser error types
        raise UsageError(f"cannot read {resolved}: {type(exc).__name__}: {exc}") from exc
    if table.empty:
        raise UsageError(f"{resolved} has no rows; point data.path at a file with data")
    missing = [column for column in required if column not in table.columns]
    if missing:
        raise UsageError(
            f"{resolved} lacks column(s) {', '.join(missing)}; it has {', '.join(map(str, table.columns))}"
        )
    return table
