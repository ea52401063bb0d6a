"""Flatten: (N, d1, d2, ...) -> (N, d1*d2*...)."""

from __future__ import annotations

import math

import numpy as np

from dlcli.core import ops
from dlcli.core.tensor import Tensor
from dlcli.nn.layers.base import Layer, Shape, ShapeError


class Flatten(Layer):
    """Keep the batch axis and flatten the rest."""

    default_name = "flatten"

    def build(self, input_shape: Shape, rng: np.random.Generator) -> Shape:
        if len(input_shape) < 2:
            raise ShapeError(f"the input {tuple(input_shape)} is already flat")
        self.input_shape = tuple(input_shape)
        self.output_shape = (math.prod(input_shape),)
        self.built = True
        return self.output_shape

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        return ops.flatten(x)
