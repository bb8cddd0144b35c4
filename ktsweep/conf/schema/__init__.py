"""Typed schema of the config tree: every node a dataclass, validated once, one module per config group.

Hydra merges the YAML files of ``conf/`` onto these dataclasses (ConfigStore keys ``schema/<group>/<name>``,
``config.register``), so an unknown key or a wrong type fails while composing. Ranges and cross-field rules are
checked by each node's ``check()``, which ``check_tree`` calls once on the composed, resolved config
(``OmegaConf.to_object``) before any training. (Not ``__post_init__``: defaults may hold interpolations that
resolve only later.)

This package's names are re-exported here, so ``ktsweep.conf.schema.Config`` and the other import paths that
user code and saved configs hold stay as they were before the split (dataclasses only: no heavy import).
"""

from __future__ import annotations

from ktsweep.conf.schema.base import (  # noqa: F401
    DIRECTIONS,
    SAMPLINGS,
    ConfigError,
)
from ktsweep.conf.schema.config import (  # noqa: F401
    SCHEMAS,
    Config,
    check_tree,
    register,
)
from ktsweep.conf.schema.data import (  # noqa: F401
    DataConf,
    DigitsConf,
    FashionConf,
    HousingConf,
    ImageFolderConf,
    NpzConf,
    SplitDataConf,
    TableConf,
)
from ktsweep.conf.schema.executor import (  # noqa: F401
    ExecutorConf,
)
from ktsweep.conf.schema.hypermodel import (  # noqa: F401
    LR_DECAYS,
    CNNConf,
    CNNSpace,
    FitSpace,
    FitTunedMLPConf,
    HyperModelConf,
    LossWeights,
    MLPConf,
    MLPSpace,
    WideDeepConf,
)
from ktsweep.conf.schema.scheduler import (  # noqa: F401
    AshaConf,
    MedianConf,
    SchedulerConf,
    StoppingConf,
)
from ktsweep.conf.schema.space import (  # noqa: F401
    Choice,
    FloatRange,
    IntRange,
)
from ktsweep.conf.schema.sweep import (  # noqa: F401
    CallbacksConf,
    EarlyStoppingConf,
    FinalConf,
    SweepConf,
    infer_direction,
    trial_checkpoint_every,
)
from ktsweep.conf.schema.tracking import (  # noqa: F401
    TrackingConf,
)
from ktsweep.conf.schema.tuner import (  # noqa: F401
    STRATEGY_NAMES,
    BayesianConf,
    GridConf,
    HyperbandConf,
    MOTPEConf,
    NSGA2Conf,
    RandomConf,
    TunerConf,
    strategy_name,
)
