"""Dropout: inverted dropout while training, the identity otherwise (as Keras Dropout)."""

from __future__ import annotations

from typing import Any

import numpy as np

from dlcli.core import ops
from dlcli.core.backend import get_array_module
from dlcli.core.tensor import Tensor
from dlcli.nn.layers.base import Layer


class Dropout(Layer):
    """Zero each input with probability `rate` while training and scale the rest by 1/(1-rate).

    The random numbers come from the model's generator (Sequential.set_rng), so one seed and one
    saved generator state reproduce a run. A layer given its own `seed` keeps its own generator.
    """

    default_name = "dropout"

    def __init__(self, rate: float, seed: int | None = None, name: str | None = None) -> None:
        super().__init__(name)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate < 1:
            raise ValueError(f"Dropout rate must be a number in [0, 1), got {rate!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"Dropout seed must be an integer or None, got {seed!r}")
        self.rate = float(rate)
        self.seed = seed
        self.rng: Any = None if seed is None else np.random.default_rng(seed)
        self._device_rng: Any = None  # a cupy generator derived from self.rng, made on first use

    def set_rng(self, rng: Any) -> None:
        if self.seed is None:
            self.rng = rng
            self._device_rng = None

    def _generator(self, xp: Any) -> Any:
        """self.rng on the CPU; for cupy arrays a cupy generator seeded once from self.rng."""
        if self.rng is None:  # used outside a Sequential without a seed
            self.rng = np.random.default_rng()
        if xp is np or not isinstance(self.rng, np.random.Generator):
            return self.rng
        if self._device_rng is None:
            self._device_rng = xp.random.default_rng(int(self.rng.integers(2**63)))
        return self._device_rng

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        if not training or self.rate == 0:
            return x
        return ops.dropout(x, self.rate, training, self._generator(get_array_module(x.data)))

    def get_config(self) -> dict[str, Any]:
        return {"rate": self.rate, "seed": self.seed, "name": self.name}
