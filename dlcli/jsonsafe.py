"""Strict JSON for files and output other programs read: NaN and infinities become null."""

from __future__ import annotations

import math
from typing import Any


def strict(obj: Any) -> Any:
    """obj with every NaN or infinity replaced by None (numpy scalars made Python numbers)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict(v) for v in obj]
    if hasattr(obj, "item") and hasattr(obj, "dtype"):  # numpy scalars
        return strict(obj.item())
    return obj
