"""A config node's keys as plain values, whether it has a ktsweep schema or comes from a user's own group."""

from __future__ import annotations

import dataclasses
from typing import Any


def node_items(node: Any) -> dict[str, Any]:
    """A config node's keys (a schema dataclass, or a namespace from the user's own group), without ``_target_``."""
    items = (
        {f.name: getattr(node, f.name) for f in dataclasses.fields(node)} if dataclasses.is_dataclass(node)
        else dict(vars(node))
    )
    items.pop("_target_", None)
    return items
