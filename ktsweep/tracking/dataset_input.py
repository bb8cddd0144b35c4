"""The sweep's data as an MLflow dataset input: what the UI's Dataset column and Datasets filter show.

Described once on the driver from the loaded ``Dataset`` and its config node (a file's path,
or the loader's name), as MLflow's own ``from_pandas`` / ``from_numpy`` would, then logged on
the sweep's parent run and on every trial's run. The description is plain JSON, so trial
records kept in the journal during an MLflow outage carry it too.

The digest of data read from a file is the file's own (the first 12 hex digits of its
SHA-256, as ``sha256sum`` prints them): two sweeps on different files are told apart, and a
user can check which file a run used. Data from a loader gets MLflow's digest of its arrays.
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING, Any, Optional

from ktsweep.core.digest import file_digest

if TYPE_CHECKING:
    from mlflow.entities import DatasetInput

CONTEXT = "training"  # MLflow's input context (the UI shows it beside the dataset's name)
TAG_SPLITS = "ktsweep.splits"  # the split sizes, on each run's input (the dataset itself is shared)
DIGEST_CHARS = 12


def describe_dataset(data_config: Any, dataset: Any) -> dict[str, Any]:
    """The MLflow dataset of a sweep (name, digest, source, schema, profile) and its input tags, as JSON."""
    import mlflow.data
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    if dataset.in_workers:
        return _describe_worker_data(dataset)
    path = getattr(data_config, "path", None)
    frame = _named_frame(dataset, getattr(data_config, "target", None) or "target")
    with warnings.catch_warnings():  # MLflow's notes on schema inference and its twice-registered local source
        warnings.simplefilter("ignore")
        if path:
            path = os.path.abspath(os.path.expanduser(path))
            source = resolve_dataset_source(path)
            digest: Optional[str] = folder_digest(data_config) if os.path.isdir(path) else file_digest(path, DIGEST_CHARS)
        else:
            source = CodeDatasetSource({"mlflow.source.name": data_config._target_})
            digest = None  # MLflow's digest of the arrays
        if frame is not None:
            described = mlflow.data.from_pandas(frame[0], source=source, targets=frame[1], name=dataset.name,
                                                digest=digest)
        else:
            described = mlflow.data.from_numpy(dataset.x_train, source=source, targets=dataset.y_train,
                                               name=dataset.name, digest=digest)
        record = described.to_dict()  # the schema is inferred here
    splits = ", ".join(f"{split}={size}" for split, size in dataset.sizes().items())
    return {"dataset": record, "tags": {"mlflow.data.context": CONTEXT, TAG_SPLITS: splits}}


def folder_digest(data_config: Any) -> str:
    """A folder read in the driver: an image folder gets the digest the workers would give it (its image
    list and sizes), any other folder the same over all its files."""
    from ktsweep.data.images import folder_digest as digest_of
    from ktsweep.data.images import list_images

    image_folder = data_config._target_.endswith("load_image_folder")
    listing = []
    for key in ("path", "test_path"):
        folder = getattr(data_config, key, None)
        if folder:
            folder = os.path.abspath(os.path.expanduser(folder))
            names = list_images(folder, f"data.{key}")[1] if image_folder else sorted(
                os.path.relpath(os.path.join(root, name), folder) for root, _, files in os.walk(folder) for name in files)
            listing += [(folder, name) for name in names]
    return digest_of(listing)


def _describe_worker_data(dataset: Any) -> dict[str, Any]:
    """Data the workers load, named by its source (the folder, or the loader), the probe's digest (an image
    folder's: of its file list) and a profile with the file count and split sizes: MLflow's ``MetaDataset``,
    which holds no rows, as the driver holds none."""
    import json

    import numpy as np
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.types import Schema, TensorSpec

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = (resolve_dataset_source(dataset.source) if os.path.isdir(dataset.source)
                  else CodeDatasetSource({"mlflow.source.name": dataset.source}))
        x = dataset.example[0]
        schema = Schema([TensorSpec(x.dtype, (-1, *x.shape[1:]), "x")]) if isinstance(x, np.ndarray) else None
        record = MetaDataset(source, name=dataset.name, digest=dataset.digest[:DIGEST_CHARS], schema=schema).to_dict()
    profile = {"files": dataset.files, **dataset.sizes(), "loaded_in": "workers"}
    record["profile"] = json.dumps({key: value for key, value in profile.items() if value is not None})
    splits = ", ".join(f"{split}={size}" for split, size in dataset.sizes().items())
    return {"dataset": record, "tags": {"mlflow.data.context": CONTEXT, TAG_SPLITS: splits}}


def _named_frame(dataset: Any, target: str) -> Optional[tuple[Any, str]]:
    """The training split as a table with the feature names (so the UI lists the columns), when it is one."""
    import pandas as pd

    names = list(dataset.feature_names)
    x, y = dataset.x_train, dataset.y_train
    if x.ndim != 2 or y.ndim != 1 or len(names) != x.shape[1] or len(set(names)) != len(names) or target in names:
        return None
    frame = pd.DataFrame(x, columns=names)
    frame[target] = y
    return frame, target


def dataset_inputs(description: dict[str, Any]) -> list["DatasetInput"]:
    """``describe_dataset``'s JSON as the entities ``MlflowClient.log_inputs`` takes."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    return [DatasetInput(Dataset(**description["dataset"]),
                         tags=[InputTag(key, value) for key, value in description["tags"].items()])]


def log_dataset(client: Any, run_id: str, description: dict[str, Any]) -> None:
    """Log the sweep's dataset input on a run.

    MLflow's store looks the dataset up, then inserts it: two sweeps logging the same new
    dataset at once (measured: two sweeps started together on one server) make one insert
    fail on the store's unique key, and that sweep died. The row is there by then, so one
    more try links it (logging an input twice is harmless). Only an error the server
    answered with is tried again; a server that does not answer raises at once.
    """
    from mlflow.exceptions import RestException

    try:
        client.log_inputs(run_id, datasets=dataset_inputs(description))
    except RestException:
        client.log_inputs(run_id, datasets=dataset_inputs(description))
