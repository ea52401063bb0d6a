"""Dense: y = activation(x @ kernel + bias) on the last axis (Keras layers/core/dense.py)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dlcli.core import ops
from dlcli.core.ops.activations import get_activation
from dlcli.core.tensor import Tensor
from dlcli.nn.initializers import get_initializer
from dlcli.nn.layers.base import Layer, Shape, ShapeError
from dlcli.nn.regularizers import get_regularizer, regularizer_config


class Dense(Layer):
    """A fully connected layer; on an input of rank > 1 it acts on the last axis, as in Keras."""

    default_name = "dense"

    def __init__(
        self,
        units: int,
        activation: str | None = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        if not isinstance(units, int | np.integer) or isinstance(units, bool) or units < 1:
            raise ValueError(f"Dense units must be a positive integer, got {units!r}")
        self.units = int(units)
        self.activation = activation
        self.activation_fn = get_activation(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        get_initializer(kernel_initializer)  # an unknown name fails here, not at build
        get_initializer(bias_initializer)
        self.kernel_regularizer = get_regularizer(kernel_regularizer)
        self.bias_regularizer = get_regularizer(bias_regularizer)

    def build(self, input_shape: Shape, rng: np.random.Generator) -> Shape:
        if len(input_shape) < 1:
            raise ShapeError(f"Dense needs an input with at least one axis, got {input_shape}")
        self.input_shape = tuple(input_shape)
        self.add_weight("kernel", (input_shape[-1], self.units), self.kernel_initializer, rng,
                        regularizer=self.kernel_regularizer)
        if self.use_bias:
            self.add_weight("bias", (self.units,), self.bias_initializer, rng,
                            regularizer=self.bias_regularizer)
        self.output_shape = (*self.input_shape[:-1], self.units)
        self.built = True
        return self.output_shape

    def pre_activation(self, x: Tensor, training: bool = False) -> Tensor:
        """x @ kernel + bias, before the activation (the trainer fuses softmax into the loss)."""
        y = ops.matmul(x, self.params["kernel"])
        return y + self.params["bias"] if self.use_bias else y

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        return self.activation_fn(self.pre_activation(x, training))

    def macs(self) -> int:
        return math.prod(self.input_shape) * self.units

    def get_config(self) -> dict[str, Any]:
        return {
            "units": self.units,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "kernel_initializer": self.kernel_initializer,
            "bias_initializer": self.bias_initializer,
            "kernel_regularizer": regularizer_config(self.kernel_regularizer),
            "bias_regularizer": regularizer_config(self.bias_regularizer),
            "name": self.name,
        }
