"""Activation: applies a named activation function, with no weights."""

from __future__ import annotations

from typing import Any

from dlcli.core.ops.activations import get_activation
from dlcli.core.tensor import Tensor
from dlcli.nn.layers.base import Layer


class Activation(Layer):
    """Keras Activation("relu"), Activation("softmax"), ..."""

    default_name = "activation"

    def __init__(self, activation: str | None, name: str | None = None) -> None:
        super().__init__(name)
        self.activation = activation
        self.activation_fn = get_activation(activation)

    def pre_activation(self, x: Tensor, training: bool = False) -> Tensor:
        """The input itself: what the activation would be applied to."""
        return x

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        return self.activation_fn(x)

    def get_config(self) -> dict[str, Any]:
        return {"activation": self.activation, "name": self.name}
