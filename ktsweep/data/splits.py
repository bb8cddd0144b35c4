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
