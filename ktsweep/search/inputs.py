"""The sweep's inputs: the dataset and the HyperModel, adapted once at the edge into the form the engine runs.

``hypermodel._target_`` may name a ``build_model(hp)`` function, a ``kt.HyperModel``
subclass or instance, or one of ktsweep's ``SweepHyperModel`` classes; ``data._target_``
a ktsweep loader or the user's own function returning arrays. A constructor or
loader gets only the config keys it accepts. Every mistake is one clear line.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ktsweep.conf.nodes import node_items
from ktsweep.conf.schema import Config
from ktsweep.core.errors import UsageError
from ktsweep.core.user_code import accepted


@dataclass
class SweepInputs:
    """What the trials need: the data, the HyperModel, and (Python API) a ready oracle and Keras callbacks."""

    dataset: Any  # ktsweep.data.loaders.Dataset
    hypermodel: Any  # keras_tuner.HyperModel
    oracle: Any = None  # a tuner's own oracle (ktsweep.sweep(tuner, ...)); None: built from config.tuner, then set
    keras_callbacks: list = field(default_factory=list)


def call_with_accepted(fn: Callable, available: dict[str, Any], what: str) -> Any:
    """``fn(**accepted)`` through Hydra's ``instantiate`` (nested ``_target_``s work); one line on failure."""
    from hydra.utils import instantiate

    try:
        return instantiate({"_target_": f"{fn.__module__}.{fn.__qualname__}", **accepted(fn, available)},
                           _convert_="object")
    except Exception as exc:  # hydra wraps the callee's own error
        cause = exc.__cause__ or exc
        if isinstance(cause, UsageError):
            raise cause from None
        raise UsageError(f"cannot {what}: {type(cause).__name__}: {cause}") from exc


def resolve(target: str, group: str) -> Any:
    from hydra.utils import get_object

    try:
        return get_object(target)
    except Exception as exc:  # the config check already imported it; this is a second line of defence
        raise UsageError(f"{group}._target_={target!r} cannot be loaded ({exc}); check the module path") from exc


def as_hypermodel(obj: Any, available: dict[str, Any], *, label: str) -> Any:
    """A ``kt.HyperModel`` from what the user gave, as Keras Tuner's tuners accept it."""
    import keras_tuner as kt

    if isinstance(obj, kt.HyperModel):
        return obj
    if inspect.isclass(obj):
        if not issubclass(obj, kt.HyperModel):
            raise UsageError(
                f"hypermodel {label} is a class but not a keras_tuner.HyperModel; subclass kt.HyperModel, "
                "or name a build_model(hp) function"
            )
        return call_with_accepted(obj, available, f"build hypermodel {label}")
    if callable(obj):  # build_model(hp): wrapped as Keras Tuner wraps it
        from keras_tuner.src.engine.hypermodel import get_hypermodel

        return get_hypermodel(obj)
    raise UsageError(
        f"hypermodel {label} is a {type(obj).__name__}: expected a build_model(hp) function, a kt.HyperModel "
        "subclass or a kt.HyperModel instance"
    )


def load_hypermodel(config: Config, dataset: Any) -> Any:
    """The configured HyperModel, told about the data and the sweep's objective (if it takes them)."""
    node = config.hypermodel
    available = {
        **node_items(node),
        "objective": config.sweep.objective,
        "direction": config.sweep.direction,
        "data_spec": dataset.spec,
    }
    return as_hypermodel(resolve(node._target_, "hypermodel"), available, label=node._target_)


def load_data(config: Config) -> Any:
    """The configured data: a ktsweep loader's ``Dataset``, the user's loader's arrays (checked), its
    pipelines read into arrays here, or (``data.load_in=workers``) a ``WorkerData`` that each worker loads."""
    from ktsweep.data.loaders import Dataset, dataset_from_arrays
    from ktsweep.data.pipelines import has_pipelines, materialise_splits

    node = config.data
    items = node_items(node)
    if items.pop("load_in", "driver") == "workers":
        return load_in_workers(config)
    loader = resolve(node._target_, "data")
    loaded = call_with_accepted(loader, items, f"load data={node.name}")
    if isinstance(loaded, Dataset):
        return loaded
    test_fraction = items.get("test_fraction", 0.2)
    if has_pipelines(loaded):  # the loader's own splits, as the workers would see them: none is cut from train
        loaded = materialise_splits(loaded, source=node._target_, hint="or set data.load_in=workers: each worker "
                                    "then loads it itself")
        test_fraction = 0.0
    return dataset_from_arrays(
        loaded, name=node.name, source=node._target_, task=items.get("task"),
        val_fraction=items.get("val_fraction", 0.2), test_fraction=test_fraction,
        seed=items.get("seed", config.sweep.seed),
    )


def load_in_workers(config: Config, loader: Optional[Callable] = None, *, name: Optional[str] = None) -> Any:
    """Data loaded by each worker (the configured loader, or the Python API's ``data=`` function): Ray is
    started, and a worker's probe reports what the driver needs (started early by the CLI: ``data_probe``)."""
    from ktsweep.execution.cluster import start_ray
    from ktsweep.execution.data_probe import probe, worker_data

    data = worker_data(config, loader, name=name, source=describe(loader) if loader is not None else None)
    start_ray(config)
    return probe(data, config)


def load_inputs(config: Config) -> SweepInputs:
    dataset = load_data(config)
    return SweepInputs(dataset=dataset, hypermodel=load_hypermodel(config, dataset))


def describe(obj: Any) -> str:
    """``module.qualname`` of a user's object (for tags and the model card)."""
    target = obj if (inspect.isclass(obj) or inspect.isfunction(obj)) else type(obj)
    name = f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', '')}".strip(".")
    return name or repr(obj)
