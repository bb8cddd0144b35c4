"""HyperModels: search spaces and the Keras models they build.

Config names them by ``_target_`` (e.g. ``hypermodels.MLPClassifier``).
"""

from hypermodels.base import DataSpec, SweepHyperModel
from hypermodels.mlp import FitTunedMLPClassifier, MLPClassifier, MLPRegressor
from hypermodels.wide_deep import SubclassedWideDeepRegressor, WideDeepModel, WideDeepRegressor

__all__ = [
    "DataSpec", "SweepHyperModel", "MLPClassifier", "MLPRegressor", "FitTunedMLPClassifier",
    "WideDeepRegressor", "SubclassedWideDeepRegressor", "WideDeepModel",
]
