"""``ktsweep.Splits``: what a data loader returns when each worker loads the data (``data/pipelines.py``).

Kept free of heavy imports, so ``import ktsweep`` stays light and a user's loader module can import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence


@dataclass
class Splits:
    """What a loader returns: each split a pipeline or ``(x, y)`` arrays, and what it knows about them
    (an image folder's class names and file count; else the probe infers task and classes)."""

    train: Any
    validation: Any
    test: Any = None
    class_names: Optional[Sequence[str]] = None
    task: Optional[str] = None  # classification | regression; None: inferred from the labels
    sizes: Optional[dict[str, int]] = None  # examples per split, where the loader knows them
    files: Optional[int] = None  # files the splits read (an image folder's)
    digest: Optional[str] = None  # of what was read (a folder's sorted file list)


@dataclass
class Description:
    """What a loader's ``describe`` returns instead of loading: all the probe needs, read without the
    framework (an image folder's listing and a few images), so the probe's worker imports no TensorFlow."""

    example: tuple[Any, Any]  # a few (x, y) rows, as the training pipeline yields them
    class_names: Optional[Sequence[str]] = None
    task: str = "classification"
    sizes: Optional[dict[str, int]] = None
    files: Optional[int] = None
    digest: Optional[str] = None
    has_test: bool = False
