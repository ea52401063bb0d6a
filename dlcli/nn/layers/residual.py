"""Residual: a block of layers with a skip connection, output = activation(F(x) + shortcut(x)).

In Keras a skip connection needs the functional API; here the block keeps the config a plain
list of layers. The shortcut is the input itself ("identity", shapes must agree) or a
"projection": a 1x1 Conv2D (images) or a Dense (vectors) with the strides or units that make
the shapes agree. Blocks may nest.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dlcli.core.ops.activations import get_activation
from dlcli.core.tensor import Tensor
from dlcli.nn.layers.base import Layer, Shape, ShapeError, build_in_order

SHORTCUTS = ("identity", "projection")


def _stride(n_in: int, n_out: int) -> int | None:
    """The stride s for which a 1x1 window gives ceil(n_in / s) == n_out, if any."""
    for s in range(1, n_in + 1):
        if math.ceil(n_in / s) == n_out:
            return s
    return None


class Residual(Layer):
    """activation(F(x) + shortcut(x)) with F the block's layers applied in order."""

    default_name = "residual"

    def __init__(self, layers: list[Any], shortcut: str = "identity",
                 activation: str | None = None, name: str | None = None) -> None:
        super().__init__(name)
        from dlcli.nn.layers import LAYERS

        if shortcut not in SHORTCUTS:
            raise ValueError(f"Residual shortcut must be one of {SHORTCUTS}, got {shortcut!r}")
        if not layers:
            raise ValueError("a Residual block needs at least one layer")
        built: list[Layer] = []
        for spec in layers:  # layers, or their configs {"type": ..., ...} (get_config)
            if isinstance(spec, Layer):
                built.append(spec)
            else:
                kwargs = dict(spec)
                built.append(LAYERS[kwargs.pop("type")](**kwargs))
        self.layers = built
        self.shortcut = shortcut
        self.activation = activation
        self.activation_fn = get_activation(activation)
        self.projection: Layer | None = None
        if shortcut == "projection":
            self.projection = _Projection()

    @property
    def children(self) -> list[Layer]:
        return self.layers + ([self.projection] if self.projection is not None else [])

    def build(self, input_shape: Shape, rng: np.random.Generator) -> Shape:
        shape = build_in_order(self.layers, input_shape, rng, label="block layer")
        if self.projection is not None:
            self.projection.target = shape
            self.projection.build(tuple(input_shape), rng)
        elif shape != tuple(input_shape):
            raise ShapeError(
                f"the identity shortcut needs the block's output shape to equal its input: the "
                f"block maps {tuple(input_shape)} to {shape}; use shortcut: projection")
        self.input_shape, self.output_shape = tuple(input_shape), shape
        self.built = True
        return shape

    def pre_activation(self, x: Tensor, training: bool = False) -> Tensor:
        """F(x) + shortcut(x), before the block's activation."""
        y = x
        for layer in self.layers:
            y = layer(y, training=training)
        s = x if self.projection is None else self.projection(x, training=training)
        return y + s

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        return self.activation_fn(self.pre_activation(x, training))

    @Layer.trainable.setter
    def trainable(self, value: bool) -> None:  # a frozen block freezes all its layers (Keras)
        Layer.trainable.fset(self, value)
        for layer in self.children:
            layer.trainable = value

    def count_params(self) -> int:
        return sum(layer.count_params() for layer in self.children)

    @property
    def trainable_weights(self) -> list[Tensor]:
        return [w for layer in self.children for w in layer.trainable_weights]

    @property
    def non_trainable_weights(self) -> list[Tensor]:
        return [w for layer in self.children for w in layer.non_trainable_weights]

    def macs(self) -> int:
        return sum(layer.macs() for layer in self.children) + math.prod(self.output_shape)

    def get_config(self) -> dict[str, Any]:
        return {"layers": [{"type": type(layer).__name__, **layer.get_config()}
                           for layer in self.layers],
                "shortcut": self.shortcut, "activation": self.activation, "name": self.name}


class _Projection(Layer):
    """The shortcut that makes shapes agree: a 1x1 Conv2D with strides, or a Dense."""

    default_name = "projection"

    def __init__(self) -> None:
        super().__init__(None)
        self.target: Shape = ()
        self.inner: Layer | None = None

    def build(self, input_shape: Shape, rng: np.random.Generator) -> Shape:
        from dlcli.nn.layers.conv import Conv2D
        from dlcli.nn.layers.dense import Dense

        src, dst = tuple(input_shape), tuple(self.target)
        if len(src) == 3 and len(dst) == 3:
            strides = (_stride(src[0], dst[0]), _stride(src[1], dst[1]))
            if None in strides:
                raise ShapeError(f"no 1x1 projection with strides maps {src} to {dst}")
            self.inner = Conv2D(dst[2], 1, strides=strides, padding="same")
            self.summary_type = "Conv2D"
        elif len(src) == 1 and len(dst) == 1:
            self.inner = Dense(dst[0])
            self.summary_type = "Dense"
        else:
            raise ShapeError(f"a projection shortcut maps images to images or vectors to vectors, "
                             f"not {src} to {dst}")
        self.inner.name = self.name
        self.inner.build(src, rng)
        self.params = self.inner.params  # the block's weights, under this layer's name
        self._learnable = self.inner._learnable
        self.input_shape, self.output_shape = src, dst
        self.built = True
        return dst

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        return self.inner(x, training=training)

    def macs(self) -> int:
        return self.inner.macs() if self.inner is not None else 0

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name}
