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


# what the GPU path needs of cupy: (version, why); checked whenever a GPU is asked for
CUPY_RULES: tuple[tuple[tuple[int, int], str], ...] = (
    ((12, 1), "ufunc.at (cupy.add.at), used by the gradients of indexing and image warps"),
    ((13, 0), "the version dlcli[gpu] installs and tests/gpu is written for"),
)


def _version(text: str) -> tuple[int, int]:
    """(major, minor) of a version string such as '13.3.0' or '14.0.0rc1'."""
    parts = [int("".join(c for c in p if c.isdigit()) or 0) for p in text.split(".")[:2]]
    parts += [0, 0]
    return parts[0], parts[1]


def check_cupy_version(version: str) -> None:
    """Raise DlcliError naming the first of CUPY_RULES that cupy `version` breaks."""
    have = _version(version)
    for need, why in CUPY_RULES:
        if have < need:
            raise DlcliError(
                f"cupy {version} is too old for dlcli's GPU path: {why} needs cupy "
                f"{need[0]}.{need[1]} or later; upgrade with pip install -U 'dlcli[gpu]'"
            )


def xp_for(device: str) -> ModuleType:
    """The array module for a device name: 'cpu' or 'gpu'.

    Raises:
        MissingExtraError: 'gpu' without cupy (the message names the `gpu` extra).
        DlcliError: cupy older than CUPY_RULES allow, or no CUDA device it can see.
    """
    if device == "cpu":
        return np
    if device == "gpu":
        from dlcli.extras import require

        cp = require("cupy", "gpu", "device 'gpu'")
        check_cupy_version(str(getattr(cp, "__version__", "0")))
        if not gpu_available():
            raise DlcliError(
                "device 'gpu' was asked for and cupy is installed, but it sees no CUDA device "
                "(no GPU or no driver); use device: cpu (or --device cpu)"
            )
        return cp
    raise ValueError(f"unknown device {device!r}: expected 'cpu' or 'gpu'")


_transfers = 0  # calls of to_host, read by transfer_count()


def to_host(a: Any) -> np.ndarray:
    """The one place where arrays leave the device: `a` as a numpy array.

    Every device-to-host read of the training and evaluation paths goes through here (each
    makes the host wait for the device), so tests count them with transfer_count(). A numpy
    array comes back unchanged and is counted all the same, so the count is the same on a CPU.
    """
    global _transfers
    _transfers += 1
    if isinstance(a, np.ndarray):
        return a
    cp = _imported_cupy()
    if cp is not None and isinstance(a, cp.ndarray):
        return cp.asnumpy(a)
    return np.asarray(a)


def host_float(a: Any) -> float:
    """A one-element array as a Python float, read through to_host."""
    return float(to_host(a).reshape(-1)[0])


def transfer_count() -> int:
    """How many times to_host has run in this process (tests: transfers per epoch)."""
    return _transfers


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


def reshape_view(a: Any, shape: tuple[int, ...]) -> Any:
    """a.reshape(shape) for code that writes through the result, so it must be a view.

    numpy and cupy both copy, silently, when the strides allow no view (and their rules for
    when they can differ); a write into such a copy would be lost. Raises ValueError instead.
    """
    v = a.reshape(shape)
    if v.size and not get_array_module(a).may_share_memory(v, a):
        raise ValueError(f"reshaping an array of shape {tuple(a.shape)} and strides "
                         f"{tuple(a.strides)} to {tuple(shape)} copies it; writes through it "
                         "would be lost")
    return v
