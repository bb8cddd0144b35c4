"""The root node, the ConfigStore entries Hydra composes onto, and the one walk that checks a tree."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from ktsweep.conf.schema.base import ConfigError, one_of
from ktsweep.conf.schema.data import DigitsConf, FashionConf, HousingConf, ImageFolderConf, NpzConf, TableConf
from ktsweep.conf.schema.executor import ExecutorConf
from ktsweep.conf.schema.hypermodel import CNNConf, FitTunedMLPConf, MLPConf, WideDeepConf
from ktsweep.conf.schema.scheduler import AshaConf, MedianConf, PbtConf, SchedulerConf
from ktsweep.conf.schema.sweep import SweepConf
from ktsweep.conf.schema.tracking import TrackingConf
from ktsweep.conf.schema.tuner import BayesianConf, GridConf, HyperbandConf, MOTPEConf, NSGA2Conf, RandomConf
from ktsweep.core.backend import BACKENDS


@dataclass
class Config:
    """The root node. Group nodes are typed by their own schema (see ``register``)."""

    hypermodel: Any = MISSING
    tuner: Any = MISSING
    data: Any = MISSING
    scheduler: Any = MISSING
    executor: ExecutorConf = field(default_factory=ExecutorConf)
    tracking: TrackingConf = field(default_factory=TrackingConf)
    sweep: SweepConf = field(default_factory=SweepConf)
    # Keras' backend for the driver and every worker; None: as Keras picks it (KERAS_BACKEND, keras.json)
    backend: Optional[str] = None

    def check(self) -> None:
        if self.backend is not None:
            one_of("backend", self.backend, BACKENDS)


# Hydra's ConfigStore keys, schema/<group>/<name>: the YAML files of each group name theirs in their defaults.
SCHEMAS: dict[str, dict[str, type]] = {
    "hypermodel": {"mlp_schema": MLPConf, "fit_tuned_mlp_schema": FitTunedMLPConf, "wide_deep_schema": WideDeepConf,
                   "cnn_schema": CNNConf},
    "tuner": {"random_schema": RandomConf, "hyperband_schema": HyperbandConf, "bayesian_schema": BayesianConf,
              "grid_schema": GridConf, "nsga2_schema": NSGA2Conf,
              "motpe_schema": MOTPEConf},
    "data": {
        "digits_schema": DigitsConf,
        "housing_schema": HousingConf,
        "table_schema": TableConf,
        "npz_schema": NpzConf,
        "fashion_schema": FashionConf,
        "image_folder_schema": ImageFolderConf,
    },
    "executor": {"executor_schema": ExecutorConf},
    "tracking": {"tracking_schema": TrackingConf},
    "scheduler": {"none_schema": SchedulerConf, "asha_schema": AshaConf, "median_schema": MedianConf,
                  "pbt_schema": PbtConf},
}


def check_tree(node: Any, path: str = "") -> None:
    """Run ``check()`` on a config object and every dataclass node below it."""
    if not dataclasses.is_dataclass(node):
        return
    checker = getattr(node, "check", None)
    if checker is not None:
        try:
            checker()
        except ConfigError as exc:
            top = path.split(".")[0]
            raise ConfigError(str(exc) if not top or str(exc).startswith(top) else f"{path}: {exc}") from None
    for item in dataclasses.fields(node):
        check_tree(getattr(node, item.name), f"{path}.{item.name}" if path else item.name)


def register() -> None:
    """Put the schemas in Hydra's ConfigStore; YAML files name them in their defaults.

    They live under ``schema/<group>`` so that ``--help`` lists only real options.
    """
    store = ConfigStore.instance()
    store.store(name="schema", node=Config)
    for group, nodes in SCHEMAS.items():
        for name, node in nodes.items():
            store.store(group=f"schema/{group}", name=name, node=node)
