"""Pooling: MaxPool2D, AvgPool2D (Keras MaxPooling2D, AveragePooling2D), GlobalAveragePooling2D."""

from __future__ import annotations

from typing import Any

import numpy as np

from dlcli.core import ops
from dlcli.core.ops.conv import normalize_padding, pair
from dlcli.core.tensor import Tensor
from dlcli.nn.layers.base import Layer, Shape, ShapeError
from dlcli.nn.layers.conv import spatial_output


class _Pool2D(Layer):
    """Shared by the two windowed pools: strides default to the pool size, as in Keras."""

    def __init__(
        self,
        pool_size: int | tuple[int, int] = 2,
        strides: int | tuple[int, int] | None = None,
        padding: str = "valid",
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        self.pool_size = pair(pool_size, "pool_size")
        self.strides = None if strides is None else pair(strides, "strides")
        self.padding = normalize_padding(padding, allow_explicit=False)

    @property
    def window_strides(self) -> tuple[int, int]:
        return self.pool_size if self.strides is None else self.strides

    def build(self, input_shape: Shape, rng: np.random.Generator) -> Shape:
        ho, wo = spatial_output("pool", input_shape, self.pool_size, self.window_strides,
                                self.padding)
        self.input_shape = tuple(input_shape)
        self.output_shape = (ho, wo, input_shape[-1])
        self.built = True
        return self.output_shape

    def macs(self) -> int:
        ho, wo, c = self.output_shape
        return ho * wo * c * self.pool_size[0] * self.pool_size[1]

    def get_config(self) -> dict[str, Any]:
        return {"pool_size": self.pool_size, "strides": self.strides, "padding": self.padding,
                "name": self.name}


class MaxPool2D(_Pool2D):
    """Max over each pool_size window."""

    default_name = "max_pooling2d"

    def call(self, x: Tensor, training: bool = False, relu: bool = False) -> Tensor:
        """relu=True pools relu(x) (the model passes it the ReLU of the layer before)."""
        return ops.max_pool2d(x, self.pool_size, self.window_strides, self.padding, relu=relu)


class AvgPool2D(_Pool2D):
    """Mean over each window; with 'same' padding the padded cells are left out of the mean."""

    default_name = "average_pooling2d"

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        return ops.avg_pool2d(x, self.pool_size, self.window_strides, self.padding)


class GlobalAveragePooling2D(Layer):
    """Mean over height and width: (H, W, C) -> (C,)."""

    default_name = "global_average_pooling2d"

    def build(self, input_shape: Shape, rng: np.random.Generator) -> Shape:
        if len(input_shape) != 3:
            raise ShapeError(
                f"expects an image input (height, width, channels), got {tuple(input_shape)}"
            )
        if min(input_shape) < 1:
            raise ShapeError(f"input {tuple(input_shape)} has an empty axis")
        self.input_shape = tuple(input_shape)
        self.output_shape = (input_shape[-1],)
        self.built = True
        return self.output_shape

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        return ops.global_avg_pool2d(x)

    def macs(self) -> int:
        h, w, c = self.input_shape
        return h * w * c
