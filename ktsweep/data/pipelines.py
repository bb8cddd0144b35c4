"""Data that each worker loads itself: the user's loader runs in the workers, never in the driver.

``data.load_in=workers`` (CLI) or ``ktsweep.sweep(tuner, data=make_datasets)`` (Python API) hands
the sweep a loader instead of arrays. Each worker process calls it once and keeps what it returned
for every trial it runs (a Python generator is used up by one ``fit``, so its loader runs again
per trial). The driver holds a ``WorkerData``: the loader's name and arguments, and what a probe,
run in a worker, reported (task, classes, shapes, a few rows, sizes, a digest), so it never reads
the files: its memory does not grow with the data.

A loader returns ``Splits`` (or a ``(train, validation[, test])`` tuple, or a dict with those
keys), each split a ``tf.data.Dataset``, a ``keras.utils.PyDataset``, a generator, or ``(x, y)``
arrays. ``tf.data`` and ``PyDataset`` work under JAX and PyTorch too: Keras iterates them.
"""

from __future__ import annotations

import hashlib
import json
import os
import types
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np

from ktsweep.core.errors import UsageError
from ktsweep.data.feeds import Feed, Feeds, is_pipeline, is_py_dataset, is_tf_dataset, rows
from ktsweep.data.splits import Description, Splits

if TYPE_CHECKING:
    from ktsweep.hypermodels.base import DataSpec

SAMPLE_ROWS = 5  # rows the driver keeps: the pre-flight build, the model's signature, the card's example
LABEL_SCAN_BATCHES = 50  # batches a probe reads to count classes when the loader does not name them


def as_splits(loaded: Any, source: str) -> Splits:
    """A loader's return value as ``Splits``; anything else is one line naming what is accepted."""
    if isinstance(loaded, Splits):
        splits = loaded
    elif hasattr(loaded, "x_train") and hasattr(loaded, "feeds"):  # a ktsweep Dataset (data=csv, npz ... in workers)
        test = (loaded.x_test, loaded.y_test) if len(loaded.x_test) else None
        splits = Splits((loaded.x_train, loaded.y_train), (loaded.x_val, loaded.y_val), test, task=loaded.task)
    elif isinstance(loaded, dict) and "train" in loaded:
        unknown = set(loaded) - {"train", "validation", "val", "test"}
        if unknown:
            raise UsageError(f"{source} returned a dict with keys {', '.join(sorted(map(str, unknown)))}; "
                             "expected train, validation and optionally test")
        splits = Splits(loaded["train"], loaded.get("validation", loaded.get("val")), loaded.get("test"))
    elif isinstance(loaded, (tuple, list)) and len(loaded) in (2, 3) and all(map(_is_split, loaded)):
        splits = Splits(*loaded)
    else:
        raise UsageError(
            f"{source} returned {type(loaded).__name__}; a loader run in the workers returns ktsweep.Splits(train, "
            "validation[, test]) or a (train, validation[, test]) tuple, each a tf.data.Dataset, a "
            "keras.utils.PyDataset or (x, y) arrays"
        )
    for part in ("train", "validation"):
        if getattr(splits, part) is None:
            raise UsageError(f"{source} returned no {part} split; the objective is measured on the validation split, "
                             "so return both (train, validation)")
    for part in ("train", "validation", "test"):
        value = getattr(splits, part)
        if value is not None and not _is_split(value):
            raise UsageError(f"{source}: its {part} split is a {type(value).__name__}; give a tf.data.Dataset, a "
                             "keras.utils.PyDataset, a generator or (x, y) arrays")
    return splits


def _is_split(value: Any) -> bool:
    return is_pipeline(value) or (isinstance(value, (tuple, list)) and len(value) == 2 and not is_pipeline(value[0]))


def _feed(value: Any) -> Optional[Feed]:
    if value is None:
        return None
    if is_pipeline(value):
        return Feed(value)
    import keras

    x, y = value
    return Feed(keras.tree.map_structure(np.asarray, x), keras.tree.map_structure(np.asarray, y))


def feeds_of(splits: Splits) -> Feeds:
    return Feeds(_feed(splits.train), _feed(splits.validation), _feed(splits.test))  # type: ignore[arg-type]


_LOADED: dict[str, tuple[Splits, Feeds]] = {}  # this worker process's data, by WorkerData.token


@dataclass
class WorkerData:
    """A sweep's data as the driver knows it when the workers load it: how to load it, and the probe's report."""

    name: str
    source: str  # the loader (module.function) or an image folder's path: what MLflow names as the source
    # a function's import path (imported in the workers only), a callable, or WithCodeDir around one
    loader: Any
    kwargs: dict[str, Any] = field(default_factory=dict)  # offered: the loader gets the ones it names
    # one per sweep run: a worker reused by the next sweep loads afresh (the files may have changed)
    run: str = field(default_factory=lambda: os.urandom(6).hex())
    code_folder: Optional[str] = None  # the user's code, importable in the worker before the loader is
    steps_per_epoch: Optional[int] = None  # fit()'s, for an endless pipeline or a generator
    validation_steps: Optional[int] = None
    # the probe's report (``summarise``, run in a worker)
    task: str = ""
    n_classes: int = 0
    feature_names: tuple[str, ...] = ()
    input_shape: tuple[int, ...] = ()
    feature_mean: tuple[float, ...] = ()  # of array training splits, for ktsweep's Normalization layers
    feature_var: tuple[float, ...] = ()
    dtype: str = ""
    split_sizes: dict[str, int] = field(default_factory=dict)
    files: Optional[int] = None
    digest: str = ""
    example: Any = None  # SAMPLE_ROWS rows of (x, y) from the training split
    example_is_arrays: bool = False  # arrays are mapped by the HyperModel's model_inputs; a pipeline yields its own
    has_test: bool = False  # the loader returned a test split (evaluated once, in a worker)

    @property
    def key(self) -> str:
        """Names what is loaded: the loader and its arguments."""
        text = json.dumps([self.source, self.kwargs], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def token(self) -> str:
        """Names this data in a worker's cache: loaded once per worker process and sweep run."""
        return f"{self.key}-{self.run}"

    def _loader(self) -> Callable[..., Any]:
        from ktsweep.core.user_code import WithCodeDir, add_to_path

        loader = self.loader.obj if isinstance(self.loader, WithCodeDir) else self.loader
        if isinstance(loader, str):  # named by its import path: imported here, in the worker
            from hydra.utils import get_object

            if self.code_folder and os.path.isdir(self.code_folder):
                add_to_path(self.code_folder)
            loader = get_object(loader)
        return loader

    def _call(self, function: Callable[..., Any]) -> Any:
        from ktsweep.core.user_code import accepted

        try:
            return function(**accepted(function, self.kwargs))
        except UsageError:
            raise
        except Exception as exc:  # the user's loader: its own error, named
            raise UsageError(f"data loader {self.source} failed: {type(exc).__name__}: {exc}") from exc

    def call_loader(self) -> Splits:
        return as_splits(self._call(self._loader()), self.source)

    def loaded(self) -> tuple[Splits, Feeds]:
        """This process's copy: loaded on first use, kept for the next trials (not a generator's)."""
        if self.token in _LOADED:
            return _LOADED[self.token]
        splits = self.call_loader()
        found = (splits, feeds_of(splits))
        generators = [part for part in (splits.train, splits.validation) if isinstance(part, types.GeneratorType)]
        steps = self.steps_per_epoch if isinstance(splits.train, types.GeneratorType) else 1
        val_steps = self.validation_steps if isinstance(splits.validation, types.GeneratorType) else 1
        if generators and (steps is None or val_steps is None):
            raise UsageError(
                f"{self.source} returned a generator, which has no length: set sweep.steps_per_epoch and "
                "sweep.validation_steps, or return a keras.utils.PyDataset or a tf.data.Dataset"
            )
        if not generators:
            _LOADED.clear()  # one sweep's data per worker process at a time
            _LOADED[self.token] = found
        return found

    in_workers = True

    def feeds(self) -> Feeds:
        return self.loaded()[1]

    def sample(self, hypermodel: Any, count: int = 1) -> tuple[Any, Any]:
        """The probe's first training rows (a pipeline yields what the model takes)."""
        from ktsweep.hypermodels.base import model_inputs, model_targets

        x, y = rows(self.example[0], count), rows(self.example[1], count)
        return (model_inputs(hypermodel, x), model_targets(hypermodel, y)) if self.example_is_arrays else (x, y)

    @property
    def spec(self) -> "DataSpec":
        from ktsweep.hypermodels.base import DataSpec

        return DataSpec(input_shape=self.input_shape, task=self.task, n_classes=self.n_classes,
                        feature_names=self.feature_names, feature_mean=self.feature_mean, feature_var=self.feature_var)

    def sizes(self) -> dict[str, int]:
        return dict(self.split_sizes)

    def summarise(self, before_loading: Callable[[], None] = lambda: None) -> WorkerData:
        """Run in a worker: load, check, and report what the driver needs (no data beyond a few rows).

        A loader with a ``ktsweep_describe`` (an image folder's) is described instead, without loading: the
        framework is not imported, ``before_loading`` (the backend's set-up) not run. A wrapper around such
        a loader (``functools.wraps`` copies the attribute) may return something else: it is loaded."""
        import dataclasses

        loader = self._loader()
        describe = getattr(loader, "ktsweep_describe", None) if not hasattr(loader, "__wrapped__") else None
        if describe is not None:
            description = self._call(describe)
            if not isinstance(description, Description):
                raise UsageError(f"{self.source}: its ktsweep_describe returned {type(description).__name__}; "
                                 "return ktsweep.data.splits.Description, or remove it")
            return self._described(description)
        before_loading()
        splits, feeds = self.loaded()
        x, y = feeds.train.sample(None, SAMPLE_ROWS)
        _same_shapes(feeds.train, feeds.val, self.source)
        task, n_classes = _task_and_classes(splits, feeds.train, feeds.val, y)
        first = x if isinstance(x, np.ndarray) else None
        flat = feeds.train.x.reshape(len(feeds.train.x), -1) if not feeds.train.pipeline and first is not None else None
        return dataclasses.replace(
            self, task=task, n_classes=n_classes,
            feature_mean=tuple(float(v) for v in flat.mean(axis=0)) if flat is not None else (),
            feature_var=tuple(float(v) for v in flat.var(axis=0)) if flat is not None else (),
            feature_names=tuple(map(str, splits.class_names or ())),
            input_shape=tuple(int(d) for d in first.shape[1:]) if first is not None else (),
            dtype=str(first.dtype) if first is not None else "", split_sizes=_sizes(splits, feeds),
            files=splits.files, digest=splits.digest or self.key, example=(x, y),
            example_is_arrays=not feeds.train.pipeline, has_test=feeds.test is not None,
        )


    def _described(self, description: Description) -> WorkerData:
        import dataclasses

        x, y = description.example
        classes = tuple(map(str, description.class_names or ()))
        return dataclasses.replace(
            self, task=description.task, n_classes=len(classes) if description.task == "classification" else 0,
            feature_names=classes, input_shape=tuple(int(d) for d in np.shape(x)[1:]), dtype=str(np.asarray(x).dtype),
            split_sizes=dict(description.sizes or {}), files=description.files, digest=description.digest or self.key,
            example=(x, y), example_is_arrays=False, has_test=description.has_test,
        )


def _shapes(value: Any) -> Any:
    import keras

    return keras.tree.map_structure(lambda array: tuple(np.shape(array)[1:]), value)


def _same_shapes(train: Feed, val: Feed, source: str) -> None:
    """A model built for the training batches must take the validation ones: checked before any trial."""
    if train.pipeline and val.pipeline and isinstance(train.x, types.GeneratorType):
        return  # a generator would lose the batch it showed
    got = [_shapes(feed.sample(None, 1)) for feed in (train, val)]
    if got[0] != got[1]:
        raise UsageError(
            f"{source}: the training split's (x, y) elements have shapes {got[0]} but the validation split's "
            f"have {got[1]}; give both splits the same element shapes (the same image_size, the same columns)"
        )


def _task_and_classes(splits: Splits, train: Feed, val: Feed, y: Any) -> tuple[str, int]:
    """The loader's word if it gave one; else classification for integer or one-hot labels, with as many
    classes as the labels show (a pipeline's first LABEL_SCAN_BATCHES batches of train and of validation:
    ``Splits(class_names=...)`` states them)."""
    if splits.class_names is not None:
        return splits.task or "classification", len(splits.class_names)
    labels = np.asarray(y)
    one_hot = (labels.ndim == 2 and labels.shape[1] > 1 and np.isin(labels, (0, 1)).all()
               and (labels.sum(axis=1) == 1).all())
    task = splits.task or ("classification" if (one_hot or labels.dtype.kind in "iub") else "regression")
    if task == "regression":
        return task, 0
    if one_hot:
        return task, int(labels.shape[1])
    seen = [labels]
    if train.pipeline and not isinstance(train.x, types.GeneratorType):
        seen += _label_batches(train.x) + _label_batches(val.x)
    elif not train.pipeline:
        seen = [np.asarray(train.y), np.asarray(val.y)]
    return task, int(max(int(np.max(part)) for part in seen if np.size(part)) + 1)


def _label_batches(pipeline: Any) -> list[np.ndarray]:
    if is_py_dataset(pipeline):
        count = pipeline.num_batches or LABEL_SCAN_BATCHES
        return [np.asarray(pipeline[i][1]) for i in range(min(count, LABEL_SCAN_BATCHES))]
    if is_tf_dataset(pipeline):
        return [np.asarray(batch[1]) for batch in pipeline.take(LABEL_SCAN_BATCHES)]
    return []


def _sizes(splits: Splits, feeds: Feeds) -> dict[str, int]:
    """Examples per split where known (arrays, the loader's count), else batches (``train_batches``)."""
    if splits.sizes:
        return dict(splits.sizes)
    found = {}
    for part, feed in (("train", feeds.train), ("val", feeds.val), ("test", feeds.test)):
        if feed is not None and len(feed):
            found[part if not feed.pipeline else f"{part}_batches"] = len(feed)
    return found


MATERIALISE_LIMIT_MB = 512.0  # a pipeline read into arrays in the driver: at most this much, else its loader


def has_pipelines(loaded: Any) -> bool:
    """Whether a loader's return value holds a pipeline (else it is arrays, in any form ``dataset_from_arrays`` takes)."""
    if isinstance(loaded, Splits):
        return True
    parts = loaded.values() if isinstance(loaded, dict) else loaded if isinstance(loaded, (tuple, list)) else [loaded]
    return any(is_pipeline(part) for part in parts)


def materialise_splits(loaded: Any, *, source: str, hint: str, limit_mb: float = MATERIALISE_LIMIT_MB) -> dict[str, Any]:
    """A loader's pipelines read into arrays in the driver (``data.load_in=driver``), as ``x_train``, ``y_train``..."""
    splits = as_splits(loaded, source)
    arrays: dict[str, Any] = {}
    for part, key in (("train", "train"), ("validation", "val"), ("test", "test")):
        value = getattr(splits, part)
        if value is None:
            continue
        if is_pipeline(value):
            x, y, _ = materialise(value, limit_mb=limit_mb, label=f"{source}'s {part} split", hint=hint, limit_hint="")
        else:
            x, y = value
        arrays[f"x_{key}"], arrays[f"y_{key}"] = x, y
    return arrays


def materialise(value: Any, *, limit_mb: float, label: str, hint: Optional[str] = None,
                limit_hint: Optional[str] = None) -> tuple[Any, Any, Optional[int]]:
    """A finite ``tf.data.Dataset`` or ``PyDataset`` as arrays ``(x, y, batch size)``, read once in the driver
    and shipped like any arrays; an endless or larger one is one line: pass its loader."""
    import keras

    hint = hint or ("pass a function that builds it instead, ktsweep.sweep(tuner, data=make_datasets, ...): it "
                    "runs in each worker")
    if isinstance(value, types.GeneratorType):
        raise UsageError(f"{label} is a generator, which cannot travel to Ray's workers; {hint}")
    batches = _batches(value, label, hint)
    xs, ys, size, batch = [], [], 0, None
    for x, y in batches:
        batch = batch or len(keras.tree.flatten(x)[0])
        xs.append(x)
        ys.append(y)
        size += sum(np.asarray(a).nbytes for a in keras.tree.flatten((x, y)))
        if size > limit_mb * 2**20:
            raise UsageError(f"{label} holds more than {limit_mb:g} MB, too much to copy into every worker; {hint}"
                             + (f" (or raise the limit, max_materialise_mb={limit_mb:g})" if limit_hint is None else limit_hint))
    if not xs:
        raise UsageError(f"{label} yields no batches; check the dataset")
    joined = []
    for name, parts in (("inputs", xs), ("targets", ys)):
        leaves = len(keras.tree.flatten(parts[0]))
        if leaves > 1:  # a dict or list of arrays: a model of several inputs or outputs
            keys = ", ".join(map(str, parts[0])) if isinstance(parts[0], dict) else f"{leaves} arrays"
            raise UsageError(f"{label} yields several {name} ({keys}), and ktsweep reads a dataset into one array "
                             f"of each; {hint} (there each worker gives the dataset to fit() as it is)")
        joined.append(np.concatenate([keras.tree.flatten(part)[0] for part in parts]))  # (x,) or {"image": x}: x
    return joined[0], joined[1], batch


def _batches(value: Any, label: str, hint: str) -> Any:
    if is_tf_dataset(value):
        import tensorflow as tf

        if int(value.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
            raise UsageError(f"{label} is an endless tf.data.Dataset (repeat()); {hint}")
        batches: Any = iter(value)
    else:
        if getattr(value, "num_batches", None) is None:
            raise UsageError(f"{label} is an endless PyDataset (num_batches is None); {hint}")
        batches = (value[i] for i in range(value.num_batches))
    return (_labelled(batch, label, hint) for batch in batches)


def _labelled(batch: Any, label: str, hint: str) -> tuple[Any, Any]:
    """One batch's ``(x, y)`` as arrays; sample weights would be lost in the arrays: refused, not dropped."""
    from ktsweep.data.feeds import to_numpy

    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise UsageError(f"{label} yields batches without labels; yield (x, y) batches, as model.fit takes them")
    if len(batch) > 2 and batch[2] is not None:
        raise UsageError(f"{label} yields sample weights (x, y, sample_weight), which its arrays would lose; {hint} "
                         "(there each worker gives the dataset to fit() as it is, weights and all)")
    return to_numpy(batch[0]), to_numpy(batch[1])
