"""Compose and validate a sweep config: the one edge where user input is checked."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import itertools
from types import SimpleNamespace
from typing import Any, Callable, Iterator, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ktsweep.conf.schema import Config, ConfigError, check_tree, register
from ktsweep.core.backend import choose as choose_backend
from ktsweep.core.backend import wanted as wanted_backend
from ktsweep.core.errors import UsageError
from ktsweep.core.user_code import add_to_path

CONFIG_MODULE = "ktsweep.conf"
CONFIG_NAME = "config"
# `_target_` prefixes of modules that moved, as saved configs (sweeps/NAME/overrides.json, a user's own
# YAML) and MLflow tags still hold them: the old name is read as the new one, here at the edge.
MOVED_TARGETS = {"ktsweep.search.datasets.": "ktsweep.data.loaders."}


def current_target(target: str) -> str:
    """The ``_target_`` a module's old path now resolves to (any other target as it is)."""
    for old, new in MOVED_TARGETS.items():
        if target.startswith(old):
            return new + target[len(old):]
    return target


def compose(overrides: list[str]) -> DictConfig:
    """The config Hydra would build for ``ktsweep run OVERRIDES`` (no sweep syntax)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    register()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            return hydra_compose(config_name=CONFIG_NAME, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        raise UsageError(config_error_line(exc)) from exc


def validate(cfg: DictConfig) -> Config:
    """Resolve interpolations and run every schema's checks; raise one clear line."""
    return check_targets(check_schema(cfg))


def check_schema(cfg: DictConfig) -> Config:
    """Types, keys, ranges: every check that needs no import of the user's (or TensorFlow's) code.

    A node from a user's own config group (no ktsweep schema) becomes a namespace,
    so the engine reads ``config.data.name`` the same way for every group.
    """
    with _one_line_errors():
        config = OmegaConf.to_object(cfg)
        for group in ("hypermodel", "tuner", "data"):
            node = getattr(config, group)
            if isinstance(node, dict):
                node = SimpleNamespace(**node)
                setattr(config, group, node)
            if isinstance(getattr(node, "_target_", None), str):
                node._target_ = current_target(node._target_)
        check_tree(config)
        return config  # type: ignore[return-value]


def check_targets(config: Config) -> Config:
    """Import what the config names (the user's build_model / HyperModel / loader modules, and so Keras, on the
    backend chosen first)."""
    with _one_line_errors():
        config.backend = choose_backend(config.backend)
        add_to_path(config.sweep.code_dir)
        for group in ("hypermodel", "tuner", "data"):
            _check_target(group, getattr(config, group))
        if not getattr(config.data, "name", None) or _target_overridden(config.data):
            config.data.name = config.data._target_.rsplit(".", 1)[-1]  # the user's loader names the data
        return config


@contextlib.contextmanager
def _one_line_errors() -> Iterator[None]:
    try:
        yield
    except ConfigError as exc:
        raise UsageError(f"invalid config: {exc}") from exc
    except OmegaConfBaseException as exc:
        raise UsageError(config_error_line(exc)) from exc


def _target_overridden(node: Any) -> bool:
    """``data._target_=my_module.load`` on one of ktsweep's groups: its ``name`` (digits...) no longer fits."""
    if not dataclasses.is_dataclass(node):
        return False
    default = next(f.default for f in dataclasses.fields(node) if f.name == "_target_")
    return isinstance(default, str) and default != node._target_


def _check_target(group: str, node: Any) -> None:
    target = getattr(node, "_target_", None)
    if not target:
        raise UsageError(f"invalid config: {group}._target_ is missing; name the class to use")
    module_name, _, attribute = target.rpartition(".")
    try:
        getattr(importlib.import_module(module_name), attribute)
    except Exception as exc:  # a broken module can raise anything on import
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise UsageError(
            f"invalid config: {group}._target_={target!r} cannot be imported "
            f"({type(exc).__name__}: {detail}); check the module path and that the package is installed"
        ) from exc


def expand_sweep_overrides(overrides: list[str]) -> list[list[str]]:
    """Every job of a ``--multirun`` as its own override list (so each can be checked)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    choices = []
    for item in parsed:
        if item.is_sweep_override():
            key = item.get_key_element()
            choices.append([f"{key}={value}" for value in item.sweep_string_iterator()])
        else:
            choices.append([item.input_line])
    return [list(job) for job in itertools.product(*choices)]


def check_overrides(overrides: list[str], *, multirun: bool, before_imports: Optional[Callable[[Config], None]] = None) -> None:
    """Fail before any training if any job of this command has a bad config.

    ``before_imports`` gets the one job's checked config before its modules are imported
    (the CLI starts Ray then, so that Ray's start overlaps TensorFlow's import)."""
    jobs = [check_schema(compose(job)) for job in (expand_sweep_overrides(overrides) if multirun else [overrides])]
    backends = {wanted_backend(config.backend) for config in jobs}
    if len(backends) > 1:
        raise UsageError(
            f"the jobs of this --multirun ask for backends {', '.join(sorted(backends))}; one process runs one Keras "
            "backend: run one command per backend"
        )
    for config in jobs:
        config.backend = choose_backend(config.backend)
    if before_imports is not None and len(jobs) == 1:
        before_imports(jobs[0])
    for config in jobs:
        check_targets(config)


def config_error_line(exc: BaseException) -> str:
    """Hydra/OmegaConf errors nest several lines deep; keep the innermost that names the problem."""
    innermost: BaseException = exc
    while innermost.__cause__ is not None and str(innermost.__cause__).strip():
        innermost = innermost.__cause__
    lines = [line.strip() for line in str(innermost).strip().splitlines()]
    problem = lines[0] if lines else type(innermost).__name__
    full_key = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("full_key:")), "")
    if "Could not find" in problem or "Could not load" in problem:
        hint = "; `ktsweep run --help` lists the groups and their options"
    elif " not in " in problem:
        hint = "; `ktsweep run --cfg job` shows the valid keys"
    else:
        hint = ""
    where = f"{full_key}: " if full_key else ""
    return f"invalid config: {where}{problem}{hint}"


def to_plain(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain data (for logging and for Ray workers)."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
