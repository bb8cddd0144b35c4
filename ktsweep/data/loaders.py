"""Dataset loaders named by ``conf/data/*`` (``_target_``); each returns a ``Dataset``.

Loaders run once, on the driver; the arrays then go into Ray's object store
so every trial reads the same copy without re-reading files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

from ktsweep.core.errors import UsageError
from ktsweep.data.feeds import Feed, Feeds
from ktsweep.hypermodels.base import DataSpec


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

    in_workers = False  # held by the driver and shipped (pipelines.WorkerData is loaded by each worker)

    @property
    def has_test(self) -> bool:
        return len(self.x_test) > 0

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.x_train), "val": len(self.x_val), "test": len(self.x_test)}

    def feeds(self) -> Feeds:
        test = Feed(self.x_test, self.y_test) if len(self.x_test) else None
        return Feeds(Feed(self.x_train, self.y_train), Feed(self.x_val, self.y_val), test)

    def sample(self, hypermodel: Any, count: int = 1) -> tuple[Any, Any]:
        """The first training rows as the model takes them (to build it, or as its signature's example)."""
        return Feed(self.x_train, self.y_train).sample(hypermodel, count)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def dtype(self) -> str:
        return str(self.x_train.dtype)


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


def bundled_housing_path() -> str:
    """The California housing CSV that ships inside the package (20,640 districts, gzip)."""
    from importlib.resources import files

    return str(files("ktsweep") / "data" / "california_housing.csv.gz")


def load_california_housing(
    *, name: str, path: Optional[str] = None, val_fraction: float, test_fraction: float, seed: int,
    one_hot_ocean: bool = False,
) -> Dataset:
    """The housing CSV as the 8 classic features (scikit-learn's names), target in units of 100k.

    ``path=None`` reads the copy bundled with ktsweep, so the presets work offline
    from any folder. Missing ``total_bedrooms`` are filled with the training
    split's median only, so nothing about validation or test leaks into training.
    """
    import pandas as pd

    table = read_table(path or bundled_housing_path(), required=HOUSING_COLUMNS + (("ocean_proximity",) if one_hot_ocean else ()))
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


def load_table(
    *,
    name: str,
    path: str,
    target: str,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    features: Optional[list[str]] = None,
    categorical: Optional[list[str]] = None,
    task: Optional[str] = None,
) -> Dataset:
    """Any CSV/Parquet table: one-hot categoricals, training-median imputation, seeded split."""
    import pandas as pd

    table = read_table(path, required=(target, *(features or ())))
    features = list(features or [c for c in table.columns if c != target])
    categorical = list(categorical if categorical is not None else
                       [c for c in features if not pd.api.types.is_numeric_dtype(table[c])])
    table = table.dropna(subset=[target])
    if table.empty:
        raise UsageError(f"{path}: every row lacks the target {target!r}")
    task = task or infer_task(table[target])
    y_raw = table[target]
    if task == "regression":
        if not pd.api.types.is_numeric_dtype(y_raw):
            raise UsageError(
                f"target {target!r} is not numeric (e.g. {y_raw.iloc[0]!r}), so it cannot be regressed; "
                "set data.task=classification or choose a numeric target"
            )
        y = y_raw.to_numpy(dtype="float32")
        classes: list[Any] = []
    else:
        classes = sorted(y_raw.unique().tolist(), key=str)
        if len(classes) < 2:
            raise UsageError(
                f"{path}: target {target!r} has a single class ({classes[0]!r}); a classifier cannot learn from it "
                "(choose another target, or set data.task=regression for a numeric one)"
            )
        y = y_raw.map({label: index for index, label in enumerate(classes)}).to_numpy(dtype="int64")
    x_frame = pd.get_dummies(table[features], columns=categorical, dtype="float32")
    bad = [c for c in x_frame.columns if not pd.api.types.is_numeric_dtype(x_frame[c])]
    if bad:
        raise UsageError(f"feature column(s) {', '.join(bad)} are not numeric; list them in data.categorical")
    x = x_frame.to_numpy(dtype="float32")
    parts = list(split(x, y, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
                       stratify=task == "classification" and np.bincount(y).min() >= 2))
    medians = np.nanmedian(parts[0], axis=0)  # imputation learned on the training split only
    for index in (0, 2, 4):
        parts[index] = np.where(np.isnan(parts[index]), medians, parts[index]).astype("float32")
    return Dataset(name, *parts, task=task, n_classes=len(classes), feature_names=tuple(map(str, x_frame.columns)))


def infer_task(target: "pd.Series") -> str:
    """Classification for text, booleans and integers with few distinct values; else regression."""
    import pandas as pd

    if not pd.api.types.is_numeric_dtype(target) or pd.api.types.is_bool_dtype(target):
        return "classification"
    if pd.api.types.is_integer_dtype(target) and target.nunique() <= 20:
        return "classification"
    return "regression"


FASHION_FILES = (
    "train-labels-idx1-ubyte.gz",
    "train-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
)
FASHION_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def load_fashion_mnist(*, name: str, seed: int, val_size: int = 5000, cache_dir: Optional[str] = None) -> Dataset:
    """Keras' Fashion-MNIST through Keras' own download cache; pixels scaled to [0, 1].

    The split is the classic one: the last ``val_size`` training images validate.
    """
    import gzip
    import os

    from keras.utils import get_file

    root = os.path.expanduser(cache_dir or os.environ.get("KERAS_HOME") or "~/.keras")
    folder = os.path.join(root, "datasets", "fashion-mnist")
    paths = []
    for fname in FASHION_FILES:
        try:
            paths.append(get_file(fname, origin=FASHION_ORIGIN + fname, cache_dir=root, cache_subdir="datasets/fashion-mnist"))
        except Exception as exc:  # no network: Keras raises a generic Exception
            raise UsageError(
                f"Fashion-MNIST is not in the Keras cache and cannot be downloaded ({type(exc).__name__}); "
                f"put {', '.join(FASHION_FILES)} from {FASHION_ORIGIN} into {folder}"
            ) from None

    def read(path: str, offset: int) -> np.ndarray:
        with gzip.open(path, "rb") as fh:
            return np.frombuffer(fh.read(), np.uint8, offset=offset)

    y_train, y_test = read(paths[0], 8).astype("int64"), read(paths[2], 8).astype("int64")
    x_train = read(paths[1], 16).reshape(len(y_train), 28, 28).astype("float32") / 255.0
    x_test = read(paths[3], 16).reshape(len(y_test), 28, 28).astype("float32") / 255.0
    if not 0 < val_size < len(x_train):
        raise UsageError(f"data.val_size={val_size} leaves no training data ({len(x_train)} images)")
    return Dataset(
        name, x_train[:-val_size], y_train[:-val_size], x_train[-val_size:], y_train[-val_size:], x_test, y_test,
        task="classification", n_classes=10, feature_names=FASHION_CLASSES,
    )


NPZ_KEYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


def load_npz(
    *, name: str, path: str, val_fraction: float, test_fraction: float, seed: int, task: Optional[str] = None
) -> Dataset:
    """Your arrays in a ``.npz`` (``np.savez``): ``x_train``/``y_train``, optionally the other splits."""
    import os

    resolved = os.path.abspath(os.path.expanduser(path))
    if not os.path.exists(resolved):
        raise UsageError(f"data file not found: {resolved}; set data.path to your .npz file")
    try:
        with np.load(resolved, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except Exception as exc:  # not a zip, a pickled object array, a truncated file
        raise UsageError(f"cannot read {resolved} as .npz ({type(exc).__name__}: {exc}); save it with np.savez") from exc
    missing = [key for key in ("x_train", "y_train") if key not in arrays]
    if missing:
        raise UsageError(
            f"{resolved} lacks {' and '.join(missing)}; it has {', '.join(arrays) or 'no arrays'} "
            "(save it as np.savez(path, x_train=..., y_train=..., [x_val=..., y_val=..., x_test=..., y_test=...]))"
        )
    return dataset_from_arrays(arrays, name=name, source=resolved, task=task, val_fraction=val_fraction,
                               test_fraction=test_fraction, seed=seed)


def _as_splits(loaded: Any, source: str) -> dict[str, Any]:
    """A loader's return value as {x_train, y_train, [x_val, y_val], [x_test, y_test]}."""
    if isinstance(loaded, dict):
        splits = dict(loaded)
        if "x" in splits and "x_train" not in splits:
            splits["x_train"], splits["y_train"] = splits.pop("x"), splits.pop("y", None)
        unknown = sorted(set(splits) - set(NPZ_KEYS))
        if unknown or "x_train" not in splits or splits.get("y_train") is None:
            raise UsageError(
                f"{source} returned a dict with keys {', '.join(map(str, splits))}; expected x_train and y_train, "
                "optionally x_val, y_val, x_test, y_test"
            )
        return splits
    if isinstance(loaded, (tuple, list)) and len(loaded) == 2 and not isinstance(loaded[0], (tuple, list)):
        return {"x_train": loaded[0], "y_train": loaded[1]}
    if isinstance(loaded, (tuple, list)) and len(loaded) in (2, 3) and all(
        isinstance(pair, (tuple, list)) and len(pair) == 2 for pair in loaded
    ):
        names = ("train", "val", "test")
        return {f"{axis}_{names[i]}": pair[j] for i, pair in enumerate(loaded) for j, axis in enumerate("xy")}
    raise UsageError(
        f"{source} returned {type(loaded).__name__}; expected (x, y), ((x_train, y_train), (x_val, y_val)"
        "[, (x_test, y_test)]) or a dict with x_train, y_train"
    )


def _labels(y_parts: list[np.ndarray], task: Optional[str], source: str) -> tuple[list[np.ndarray], str, int]:
    """Targets as a model takes them: task inferred, text labels as indices, one-hot recognised."""
    y_all = np.concatenate(y_parts)
    one_hot = (
        y_all.ndim == 2 and y_all.shape[1] > 1 and np.isin(y_all, (0, 1)).all() and (y_all.sum(axis=1) == 1).all()
    )
    if task is None:
        task = "classification" if (one_hot or y_all.dtype.kind in "iubUSO") else "regression"
    if task == "regression":
        if y_all.dtype.kind not in "iuf":
            raise UsageError(f"{source}: y holds {y_all.dtype} values, which cannot be regressed; set data.task=classification")
        return [part.astype("float32") for part in y_parts], task, 0
    if one_hot:
        classes = tuple(range(y_all.shape[1]))
        present = np.unique(y_all.argmax(axis=1))
    else:
        flat = y_all.reshape(len(y_all), -1)
        if flat.shape[1] != 1:
            raise UsageError(f"{source}: a classification target must be one label per row (or one-hot); got y of shape {y_all.shape}")
        present = np.unique(flat[:, 0])
        if y_all.dtype.kind in "iub" and present.min() >= 0:
            classes = tuple(range(int(present.max()) + 1))
            y_parts = [part.reshape(len(part)).astype("int64") for part in y_parts]
        else:  # text or negative labels: indices into the sorted labels
            classes = tuple(present.tolist())
            index = {label: i for i, label in enumerate(classes)}
            y_parts = [np.array([index[v] for v in part.reshape(len(part)).tolist()], dtype="int64") for part in y_parts]
    if len(present) < 2:
        raise UsageError(
            f"{source}: the classification target has a single class ({present[0]!r}); a model cannot learn from it "
            "(check the target column or labels, or set data.task=regression)"
        )
    return y_parts, task, len(classes)


def dataset_from_arrays(
    loaded: Any, *, name: str, source: str, task: Optional[str] = None, val_fraction: float = 0.2,
    test_fraction: float = 0.2, seed: int = 42,
) -> Dataset:
    """Your own arrays as a ``Dataset``: lengths checked, task and classes inferred, missing splits cut from train."""
    from sklearn.model_selection import train_test_split

    splits = {key: np.asarray(value) for key, value in _as_splits(loaded, source).items() if value is not None}
    for part in ("train", "val", "test"):
        x, y = splits.get(f"x_{part}"), splits.get(f"y_{part}")
        if (x is None) != (y is None):
            raise UsageError(f"{source}: x_{part} and y_{part} come together; one of them is missing")
        if x is not None and len(x) != len(y):
            raise UsageError(f"{source}: x_{part} has {len(x)} rows but y_{part} has {len(y)}; they must match")
    if len(splits["x_train"]) < 2:
        raise UsageError(f"{source}: x_train has {len(splits['x_train'])} rows; a sweep needs more data")
    present = [part for part in ("train", "val", "test") if f"y_{part}" in splits]
    ys, task, n_classes = _labels([splits[f"y_{part}"] for part in present], task, source)
    splits.update({f"y_{part}": y for part, y in zip(present, ys)})
    x_train, y_train = splits["x_train"], splits["y_train"]

    def cut(fraction: float, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
        counts = np.bincount(y) if task == "classification" and y.ndim == 1 else None
        stratify = y if counts is not None and counts[counts > 0].min() >= 2 else None  # as a CSV's split
        return tuple(train_test_split(x, y, test_size=fraction, random_state=seed, stratify=stratify))

    test_cut = "x_test" not in splits
    if test_cut and test_fraction > 0:
        x_train, splits["x_test"], y_train, splits["y_test"] = cut(test_fraction, x_train, y_train)
    elif test_cut:
        splits["x_test"], splits["y_test"] = x_train[:0], y_train[:0]
    if "x_val" not in splits:
        share = val_fraction / (1.0 - test_fraction) if test_cut else val_fraction
        x_train, splits["x_val"], y_train, splits["y_val"] = cut(share, x_train, y_train)
    splits["x_train"], splits["y_train"] = x_train, y_train
    x = {part: splits[f"x_{part}"] for part in ("train", "val", "test")}
    x = {part: (value.astype("float32") if value.dtype.kind in "iubf" else value) for part, value in x.items()}
    names = tuple(f"x{i}" for i in range(x["train"].shape[1])) if x["train"].ndim == 2 else ()
    return Dataset(
        name, x["train"], splits["y_train"], x["val"], splits["y_val"], x["test"], splits["y_test"],
        task=task, n_classes=n_classes, feature_names=names,
    )
