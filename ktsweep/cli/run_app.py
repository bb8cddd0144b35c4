"""The Hydra entry point of ``ktsweep run``: Hydra composes, ktsweep validates and runs.

Going through ``hydra.main`` gives users every Hydra feature for free:
overrides, ``--multirun`` sweeps over configs, ``--cfg job``, ``--help``.
"""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ktsweep.cli.console import fail, print_offline_outcome, print_outcome
from ktsweep.conf.compose import validate
from ktsweep.conf.schema import register
from ktsweep.core.errors import KtsweepError
from ktsweep.search.interrupts import say

register()


@hydra.main(version_base="1.3", config_path="pkg://ktsweep.conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from ktsweep.search.flow import run_sweep

    try:
        config = validate(cfg)
        overrides = list(HydraConfig.get().overrides.task)
        outcome = run_sweep(config, resolved_yaml=OmegaConf.to_yaml(cfg, resolve=True), overrides=overrides,
                            end_process_on_third_ctrl_c=True)
    except KtsweepError as exc:
        fail(exc)
    except KeyboardInterrupt as exc:  # what a second Ctrl-C kept, before the CLI's "interrupted" line
        for note in getattr(exc, "__notes__", ()):
            say(note)
        raise
    if outcome.unsynced:
        print_offline_outcome(outcome)
        raise SystemExit(3)
    print_outcome(outcome)
    if outcome.status != "FINISHED":
        raise SystemExit(1)
