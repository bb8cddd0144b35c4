"""HyperModels: search spaces and the Keras models they build.

Config names them by ``_target_`` (e.g. ``ktsweep.hypermodels.MLPClassifier``).
"""

from ktsweep.hypermodels.base import DataSpec, SweepHyperModel
from ktsweep.hypermodels.cnn import CNNClassifier
from ktsweep.hypermodels.mlp import FitTunedMLPClassifier, MLPClassifier, MLPRegressor
from ktsweep.hypermodels.wide_deep import SubclassedWideDeepRegressor, WideDeepModel, WideDeepRegressor

__all__ = [
    "DataSpec", "SweepHyperModel", "MLPClassifier", "MLPRegressor", "FitTunedMLPClassifier",
    "WideDeepRegressor", "SubclassedWideDeepRegressor", "WideDeepModel", "CNNClassifier",
]
