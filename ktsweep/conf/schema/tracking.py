"""The ``tracking`` group: where runs go (MLflow) and the registry name of the best model."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from ktsweep.conf.schema.base import one_of, require


@dataclass
class TrackingConf:
    """MLflow: where runs go and the registry name of the best model."""

    uri: str = ""  # "": sqlite file under sweep.root
    experiment: str = "ktsweep"
    registered_model: str = MISSING
    register: bool = True
    promote: str = "if_better"  # always | if_better | never: when `champion` moves to the new model

    def check(self) -> None:
        one_of("tracking.promote", self.promote, ("always", "if_better", "never"))
        name = self.registered_model
        require(bool(name.strip()), "tracking.registered_model must not be empty; name the model to register")
        require(
            "'" not in name,
            f"tracking.registered_model may not contain ' (MLflow's search filters cannot match it); got {name!r}",
        )
