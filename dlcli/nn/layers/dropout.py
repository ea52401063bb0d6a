"""Dropout and SpatialDropout2D: inverted dropout while training, the identity otherwise (Keras)."""

from __future__ import annotations

from typing import Any

import numpy as np

from dlcli.core import ops
from dlcli.core.backend import get_array_module
from dlcli.core.ops.norm import resolve_noise_shape
from dlcli.core.random import device_generator
from dlcli.core.tensor import Tensor
from dlcli.nn.layers.base import Layer, Shape, ShapeError


class Dropout(Layer):
    """Zero each input with probability `rate` while training and scale the rest by 1/(1-rate).

    noise_shape (Keras's): the shape of the drawn mask, one entry per axis with the batch axis
    first; None takes the input's size and 1 shares one draw along that axis, so
    [None, 1, 1, None] drops whole channels of (H, W, C) inputs. The random numbers come from
    the model's generator (Sequential.set_rng), so one seed and one saved generator state
    reproduce a run. A layer given its own `seed` keeps its own generator. On a GPU the masks
    come from `device_rng` (a dlcli.core.random.CounterRNG keyed from that generator), whose
    state checkpoints save too.
    """

    default_name = "dropout"

    def __init__(
        self, rate: float, noise_shape: list[int | None] | None = None, seed: int | None = None,
        name: str | None = None,
    ) -> None:  # fmt: skip
        super().__init__(name)
        kind = type(self).__name__
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate < 1:
            raise ValueError(f"{kind} rate must be a number in [0, 1), got {rate!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"{kind} seed must be an integer or None, got {seed!r}")
        if noise_shape is not None:
            if not isinstance(noise_shape, list | tuple) or not noise_shape:
                raise ValueError(f"Dropout noise_shape must be a list (null entries take the "
                                 f"input's size), got {noise_shape!r}")
            resolve_noise_shape(noise_shape, (None,) * len(noise_shape))  # entries are valid
            noise_shape = [None if n is None else int(n) for n in noise_shape]
        self.rate = float(rate)
        self.noise_shape = noise_shape
        self.seed = seed
        self.rng: Any = None if seed is None else np.random.default_rng(seed)
        self.device_rng: Any = None  # a CounterRNG derived from self.rng, made on first use

    def build(self, input_shape: Shape, rng: np.random.Generator) -> Shape:
        if self.noise_shape is not None:
            try:
                resolve_noise_shape(self.noise_shape, (None, *input_shape))
            except ValueError as err:
                raise ShapeError(str(err)) from None
            # a fixed batch entry would not fit the last, smaller batch of an epoch
            if self.noise_shape[0] not in (None, 1):
                raise ShapeError(f"noise_shape: the batch entry must be null or 1 (the last batch "
                                 f"of an epoch is smaller), got {self.noise_shape[0]}")
        return super().build(input_shape, rng)

    def set_rng(self, rng: Any) -> None:
        if self.seed is None:
            self.rng = rng
            self.device_rng = None

    def _generator(self, xp: Any) -> Any:
        """self.rng on the CPU; for cupy arrays a CounterRNG keyed once from self.rng."""
        if self.rng is None:  # used outside a Sequential without a seed
            self.rng = np.random.default_rng()
        if xp is np or not isinstance(self.rng, np.random.Generator):
            return self.rng
        if self.device_rng is None or self.device_rng.xp is not xp:
            self.device_rng = device_generator(self.rng, xp)
        return self.device_rng

    def _noise_shape(self) -> list[int | None] | None:
        return self.noise_shape

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        if not training or self.rate == 0:
            return x
        return ops.dropout(x, self.rate, training, self._generator(get_array_module(x.data)),
                           noise_shape=self._noise_shape())

    def get_config(self) -> dict[str, Any]:
        return {"rate": self.rate, "noise_shape": self.noise_shape, "seed": self.seed,
                "name": self.name}


class SpatialDropout2D(Dropout):
    """Drop whole feature maps of (H, W, C) inputs while training (Keras SpatialDropout2D).

    One draw per image and channel (noise shape (N, 1, 1, C)), kept maps scaled by 1/(1-rate);
    the identity otherwise. Channels last only, as every dlcli image layer.
    """

    default_name = "spatial_dropout2d"

    def __init__(self, rate: float, seed: int | None = None, name: str | None = None) -> None:
        super().__init__(rate, seed=seed, name=name)

    def build(self, input_shape: Shape, rng: np.random.Generator) -> Shape:
        if len(input_shape) != 3:
            raise ShapeError(f"expects an image input (height, width, channels), got "
                             f"{tuple(input_shape)}")
        return super().build(input_shape, rng)

    def _noise_shape(self) -> list[int | None]:
        return [None, 1, 1, None]

    def get_config(self) -> dict[str, Any]:
        return {"rate": self.rate, "seed": self.seed, "name": self.name}
