"""The sweep's inputs from config: the dataset and the HyperModel, each failing in one clear line."""

from __future__ import annotations

from typing import Any

from ktsweep.conf.schema import Config
from ktsweep.search.errors import UsageError


def load_data(config: Config) -> Any:
    from hydra.utils import instantiate

    try:
        return instantiate(config.data)
    except UsageError:
        raise
    except Exception as exc:  # hydra wraps the loader's own error
        cause = exc.__cause__ or exc
        if isinstance(cause, UsageError):
            raise cause from None
        raise UsageError(f"cannot load data={config.data.name}: {type(cause).__name__}: {cause}") from exc



def load_hypermodel(config: Config, dataset: Any) -> Any:
    """The configured HyperModel, told about the data; a mismatch with the data is one clear line."""
    from hydra.utils import instantiate

    try:
        return instantiate(config.hypermodel, _convert_="object", data_spec=dataset.spec)
    except Exception as exc:  # hydra wraps the constructor's own error
        cause = exc.__cause__ or exc
        raise UsageError(f"cannot build hypermodel {config.hypermodel._target_}: {cause}") from exc
