"""numpy on the CPU, cupy on a GPU: one code path through `get_array_module`."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

DEFAULT_DTYPE = np.float32

try:  # cupy is optional: a machine without it imports dlcli fine.
    import cupy as _cupy  # type: ignore[import-not-found]
except Exception:  # pragma: no cover - depends on the machine
    _cupy = None


def get_array_module(*arrays: Any) -> ModuleType:
    """Return cupy if any argument is a cupy array, else numpy."""
    if _cupy is not None:
        for a in arrays:
            if isinstance(a, _cupy.ndarray):
                return _cupy
    return np


def gpu_available() -> bool:
    """True when cupy imports and sees at least one CUDA device."""
    if _cupy is None:
        return False
    try:
        return _cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def xp_for(device: str) -> ModuleType:
    """The array module for a device name: 'cpu' or 'gpu'."""
    if device == "cpu":
        return np
    if device == "gpu":
        if not gpu_available():
            raise RuntimeError(
                "device 'gpu' was asked for, but cupy is not installed or sees no GPU; "
                "install it with pip install 'dlcli[gpu]' or use device: cpu"
            )
        return _cupy
    raise ValueError(f"unknown device {device!r}: expected 'cpu' or 'gpu'")


def to_numpy(a: Any) -> np.ndarray:
    """Copy an array to host memory (no copy for numpy arrays)."""
    if _cupy is not None and isinstance(a, _cupy.ndarray):
        return _cupy.asnumpy(a)
    return np.asarray(a)
