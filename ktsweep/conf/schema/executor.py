"""The ``executor`` group: where and how wide trials run (Ray)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ktsweep.conf.schema.base import at_least, require


@dataclass
class ExecutorConf:
    """Where and how wide trials run."""

    address: Optional[str] = None  # None: start a local Ray; "auto" or ray://host:10001
    # Where Ray keeps trial checkpoints (Hyperband hand-off, resume). None: the sweep folder,
    # which every node must see on a cluster; else a shared path or s3:// / gs:// URI.
    storage_path: Optional[str] = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0  # fractions share a GPU between trials
    resources_per_trial: dict[str, float] = field(default_factory=dict)  # custom Ray resources, e.g. {big_mem: 1}
    max_concurrent: Optional[int] = None  # None: as many as the CPUs allow
    max_failures: int = 1  # retries of a trial whose worker process died
    log_to_driver: bool = False  # show worker stdout/stderr (TensorFlow's chatter)
    compilation_cache: bool = True  # JAX: compiled programs kept in SWEEP_ROOT/jax_cache for later trials and sweeps

    def check(self) -> None:
        require(self.cpus_per_trial > 0, f"executor.cpus_per_trial must be > 0; got {self.cpus_per_trial}")
        at_least("executor.gpus_per_trial", self.gpus_per_trial, 0)
        for key, amount in self.resources_per_trial.items():
            require(amount > 0, f"executor.resources_per_trial.{key} must be > 0; got {amount}")
        require(
            self.max_concurrent is None or self.max_concurrent >= 1,
            f"executor.max_concurrent must be >= 1; got {self.max_concurrent}",
        )
        at_least("executor.max_failures", self.max_failures, 0)
