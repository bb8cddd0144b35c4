"""The one file digest ktsweep records: a published bundle's model, a final model reused, a dataset's file."""

from __future__ import annotations

import hashlib
from typing import Optional


def file_digest(path: str, chars: Optional[int] = None) -> str:
    """The file's sha256 in hex; ``chars`` shortens it where it only names a file (MLflow's dataset digest)."""
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    return digest[:chars] if chars else digest
