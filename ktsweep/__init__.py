"""ktsweep: hyperparameter sweeps for Keras. Keras Tuner decides, Ray runs, MLflow remembers.

The public Python API is ``ktsweep.sweep`` and its ``SweepResult``; both load on first use,
so ``import ktsweep`` stays as light as the CLI's fast commands (no TensorFlow, Ray or MLflow).
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["sweep", "SweepResult", "Splits", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("sweep", "SweepResult"):
        from ktsweep import api as python_api

        return getattr(python_api, name)
    if name == "Splits":  # what a loader run in the workers returns
        from ktsweep.data.splits import Splits

        return Splits
    raise AttributeError(f"module 'ktsweep' has no attribute {name!r}")
