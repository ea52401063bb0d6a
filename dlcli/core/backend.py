"""numpy on the CPU, cupy on a GPU: one code path through `get_array_module`."""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

import numpy as np

from dlcli.errors import DlcliError

DEFAULT_DTYPE = np.float32

def _imported_cupy() -> ModuleType | None:
    """cupy if something already imported it; no array can be a cupy array otherwise."""
    return sys.modules.get("cupy")


def get_array_module(*arrays: Any) -> ModuleType:
    """Return cupy if any argument is a cupy array, else numpy."""
    cp = _imported_cupy()
    if cp is not None:
        for a in arrays:
            if isinstance(a, cp.ndarray):
                return cp
    return np


def _import_cupy() -> ModuleType | None:
    # cupy is optional and heavy: imported only when a GPU is asked for
    try:
        import cupy  # type: ignore[import-not-found]
    except Exception:
        return None
    return cupy


def gpu_available() -> bool:
    """True when cupy imports and sees at least one CUDA device."""
    cp = _import_cupy()
    if cp is None:
        return False
    try:
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def xp_for(device: str) -> ModuleType:
    """The array module for a device name: 'cpu' or 'gpu'."""
    if device == "cpu":
        return np
    if device == "gpu":
        if not gpu_available():
            raise DlcliError(
                "device 'gpu' was asked for, but cupy is not installed or sees no GPU; "
                "install it with pip install 'dlcli[gpu]' or use device: cpu"
            )
        return _import_cupy()
    raise ValueError(f"unknown device {device!r}: expected 'cpu' or 'gpu'")


def to_numpy(a: Any) -> np.ndarray:
    """Copy an array to host memory (no copy for numpy arrays)."""
    cp = _imported_cupy()
    if cp is not None and isinstance(a, cp.ndarray):
        return cp.asnumpy(a)
    return np.asarray(a)


def tune_host_allocator() -> bool:
    """Make glibc keep freed memory between training steps; True where it took effect.

    By default glibc returns large freed blocks to the OS (mmap above 128 KiB, heap trimming),
    and the next step page-faults the same memory in again: a large share of a CNN step.
    Raising both thresholds keeps it. A no-op off glibc.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_mmap_threshold = -1, -3  # from malloc.h
        return bool(libc.mallopt(m_mmap_threshold, 32 * 2**20)
                    and libc.mallopt(m_trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):
        return False
