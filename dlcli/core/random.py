"""Random numbers made on the device, from a state of two integers that a checkpoint saves.

cupy's own generators keep their state in device memory in a form nothing can save, so a run
resumed on a GPU would draw other dropout masks than the uninterrupted one. `CounterRNG` is
counter-based instead: element i of a draw is SplitMix64's output for Weyl-sequence step
counter + i under `key` (Steele, Lea and Flood, "Fast splittable pseudorandom number
generators", 2014), so the whole state is (key, counter) and any draw can be made again.
On numpy dlcli keeps numpy's Generator; CounterRNG also runs on numpy, which is how its
cupy kernel is checked.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_MASK = 2**64 - 1

# the same arithmetic as CounterRNG._bits + _uniform, fused into one cupy kernel
_KERNEL_BODY = """
unsigned long long z = (start + (unsigned long long)i) * 0x9E3779B97F4A7C15ull + key;
z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
z = z ^ (z >> 31);
u = (sizeof(T) == 4) ? (T)(z >> 40) * (T)5.9604644775390625e-08
                     : (T)(z >> 11) * (T)1.1102230246251565e-16;
"""
_kernels: dict[str, Any] = {}


def _uniform_kernel(cp: ModuleType) -> Any:
    k = _kernels.get("uniform")
    if k is None:
        k = _kernels["uniform"] = cp.ElementwiseKernel(
            "uint64 key, uint64 start", "T u", _KERNEL_BODY, "dlcli_counter_uniform")
    return k


class CounterRNG:
    """Uniform and normal draws on numpy or cupy arrays from the state (key, counter).

    Example:
        rng = CounterRNG(key=1234, xp=cupy)
        mask = rng.random((128, 256), dtype=np.float32) >= 0.5
        saved = rng.state            # {"key": 1234, "counter": 32768}
        CounterRNG.from_state(saved, cupy).random(...)  # what rng.random(...) draws next
    """

    def __init__(self, key: int, counter: int = 0, xp: ModuleType = np) -> None:
        self.key = int(key) & _MASK
        self.counter = int(counter) & _MASK
        self.xp = xp

    @property
    def state(self) -> dict[str, int]:
        return {"key": self.key, "counter": self.counter}

    @classmethod
    def from_state(cls, state: Any, xp: ModuleType = np) -> CounterRNG:
        """A generator from `state`; ValueError unless it is {"key": int, "counter": int} with
        both in [0, 2**64)."""
        ok = isinstance(state, dict) and set(state) == {"key", "counter"} and all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= _MASK
            for v in state.values())
        if not ok:
            raise ValueError(f"a device generator state is {{key, counter}}, two integers in "
                             f"[0, 2**64), got {str(state)[:80]}")
        return cls(state["key"], state["counter"], xp)

    def _take(self, n: int) -> int:
        start, self.counter = self.counter, (self.counter + n) & _MASK
        return start

    def _bits(self, n: int, start: int) -> Any:
        """n 64-bit outputs for steps start .. start + n - 1."""
        xp = self.xp
        z = xp.arange(n, dtype=np.uint64)
        z += np.uint64(start)
        z *= _GOLDEN
        z += np.uint64(self.key)
        z ^= z >> np.uint64(30)
        z *= _MIX1
        z ^= z >> np.uint64(27)
        z *= _MIX2
        z ^= z >> np.uint64(31)
        return z

    def _uniform(self, shape: tuple[int, ...], dtype: Any) -> Any:
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"CounterRNG draws float32 or float64, not {dtype}")
        n = math.prod(shape)
        start = self._take(n)
        xp = self.xp
        if xp is not np:  # a real cupy fast path: one kernel instead of ten
            out = xp.empty(shape, dtype=dtype)
            _uniform_kernel(xp)(np.uint64(self.key), np.uint64(start), out)
            return out
        z = self._bits(n, start)
        # the top 24 (float32) or 53 (float64) bits, scaled into [0, 1): exact in that dtype
        if dtype == np.float32:
            u = (z >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)
        else:
            u = (z >> np.uint64(11)).astype(np.float64) * 2.0**-53
        return u.reshape(shape)

    def random(self, shape: Any = (), dtype: Any = np.float32) -> Any:
        """Uniform floats in [0, 1) of `shape`, as numpy's Generator.random(shape, dtype)."""
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        return self._uniform(shape, dtype)

    def standard_normal(self, shape: Any = (), dtype: Any = np.float32) -> Any:
        """Normal floats (mean 0, variance 1) by Box-Muller from two float64 uniform draws."""
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        xp = self.xp
        u1 = self._uniform(shape, np.float64)
        u2 = self._uniform(shape, np.float64)
        # 1 - u1 lies in (0, 1]: the log is finite
        r = xp.sqrt(-2.0 * xp.log1p(-u1))
        return (r * xp.cos((2.0 * math.pi) * u2)).astype(dtype, copy=False)


def device_generator(rng: Any, xp: ModuleType) -> CounterRNG:
    """A CounterRNG for arrays of `xp`, keyed by one draw from the numpy Generator `rng` (so the
    model's seed and its saved generator state decide it)."""
    return CounterRNG(int(rng.integers(2**63)), 0, xp)
