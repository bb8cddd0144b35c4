"""The ``hypermodel`` group: ktsweep's own HyperModels (a user's ``_target_`` needs no schema)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from omegaconf import MISSING

from ktsweep.conf.schema.base import DIRECTIONS, at_least, one_of, require
from ktsweep.conf.schema.space import Choice, FloatRange, IntRange


@dataclass
class MLPSpace:
    """The classic MLP search space (Géron, ch. 10)."""

    n_hidden: IntRange = field(default_factory=lambda: IntRange(min=0, max=8, default=2))
    n_neurons: IntRange = field(default_factory=lambda: IntRange(min=16, max=256))
    learning_rate: FloatRange = field(
        default_factory=lambda: FloatRange(min=1e-4, max=1e-2, sampling="log")
    )
    optimizer: Choice = field(default_factory=lambda: Choice(values=["sgd", "adam"]))


@dataclass
class FitSpace:
    """Hyperparameters of training rather than of the network (Keras Tuner's ``HyperModel.fit``)."""

    normalize: bool = True  # tune a Normalization layer on/off (hp.Boolean)
    batch_size: Choice = field(default_factory=lambda: Choice(values=[16, 32, 64, 128], default=32))


@dataclass
class HyperModelConf:
    """Common to ktsweep's HyperModels: the class and the objective it is usually judged by.

    ``sweep.objective`` / ``sweep.direction`` default to these; a user's own target
    (a ``build_model(hp)`` function or any ``kt.HyperModel``) needs neither.
    """

    _target_: str = MISSING
    objective: Optional[str] = None
    direction: Optional[str] = None

    def check(self) -> None:
        require(
            self.direction in (None, *DIRECTIONS),
            f"hypermodel.direction must be one of max, min or null; got {self.direction!r}",
        )


LR_DECAYS = ("inverse_time", "cosine")


@dataclass
class MLPConf(HyperModelConf):
    space: MLPSpace = field(default_factory=MLPSpace)
    normalize: bool = False  # a Normalization layer with the training split's statistics
    # > 0: the learning rate decays over lr_decay_steps optimizer steps, which settles the last epochs
    # of a long run; 0: constant. lr_decay: inverse_time (lr / (1 + step / lr_decay_steps), Keras'
    # InverseTimeDecay) or cosine (to 1% of lr at lr_decay_steps, then flat: Keras' CosineDecay).
    lr_decay_steps: int = 0
    lr_decay: str = "inverse_time"

    def check(self) -> None:
        super().check()
        at_least("hypermodel.lr_decay_steps", self.lr_decay_steps, 0)
        one_of("hypermodel.lr_decay", self.lr_decay, LR_DECAYS)


@dataclass
class FitTunedMLPConf(MLPConf):
    fit_space: FitSpace = field(default_factory=FitSpace)


@dataclass
class LossWeights:
    """Weights of the wide & deep model's two losses (Géron: 0.9 main, 0.1 auxiliary)."""

    main: float = 0.9
    aux: float = 0.1

    def check(self) -> None:
        require(self.main > 0, f"loss_weights.main must be > 0; got {self.main}")
        at_least("loss_weights.aux", self.aux, 0)


@dataclass
class WideDeepConf(MLPConf):
    """Wide & deep: the wide columns skip the deep stack; an auxiliary output regularises the stack.

    Feature indices are columns of the data's feature matrix (checked against the
    data when the model is built).
    """

    wide_features: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    deep_features: list[int] = field(default_factory=lambda: [2, 3, 4, 5, 6, 7])
    loss_weights: LossWeights = field(default_factory=LossWeights)
    normalize: bool = True

    def check(self) -> None:
        super().check()
        for key in ("wide_features", "deep_features"):
            columns = getattr(self, key)
            require(len(columns) > 0, f"hypermodel.{key} must name at least one feature column")
            require(min(columns) >= 0, f"hypermodel.{key} holds a negative column index: {columns}")
            require(len(set(columns)) == len(columns), f"hypermodel.{key} repeats a column: {columns}")


@dataclass
class CNNSpace:
    """A small convnet's space: conv blocks (each doubling the filters, then pooling), a dense head."""

    conv_blocks: IntRange = field(default_factory=lambda: IntRange(min=1, max=3, default=2))
    filters: Choice = field(default_factory=lambda: Choice(values=[16, 32, 64], default=32))
    kernel_size: Choice = field(default_factory=lambda: Choice(values=[3, 5], default=3))
    dropout: FloatRange = field(default_factory=lambda: FloatRange(min=0.0, max=0.5, default=0.25))
    dense_units: IntRange = field(default_factory=lambda: IntRange(min=32, max=256, step=32, default=64))
    learning_rate: FloatRange = field(default_factory=lambda: FloatRange(min=1e-4, max=1e-2, sampling="log"))


@dataclass
class CNNConf(HyperModelConf):
    space: CNNSpace = field(default_factory=CNNSpace)
    rescale: float = 1 / 255  # pixels as image folders give them (0-255) times this, inside the model

    def check(self) -> None:
        super().check()
        require(self.rescale > 0, f"hypermodel.rescale must be > 0; got {self.rescale}")
