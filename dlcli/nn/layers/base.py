"""Layer: hyperparameters in __init__, weights in build(input_shape), computation in call()."""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

from dlcli.core.tensor import Tensor

Shape = tuple[int | None, ...]


class ShapeError(ValueError):
    """A layer cannot take the shape it is given (raised at build, before any data)."""


class Layer(abc.ABC):
    """Base class. Subclasses set `config` keys from their constructor arguments.

    build(input_shape, rng) gets the shape without the batch axis, creates weights through
    add_weight and returns the output shape; call(x, training) computes on a Tensor.
    """

    def __init__(self, name: str | None = None) -> None:
        self.name = name
        self.built = False
        self.input_shape: Shape | None = None
        self.output_shape: Shape | None = None
        self.params: dict[str, Tensor] = {}  # trainable and non-trainable, in creation order
        self.regularizers: dict[str, Any] = {}  # weight name -> Regularizer

    # -- construction -------------------------------------------------------------------
    def add_weight(
        self,
        name: str,
        shape: tuple[int, ...],
        initializer: Any,
        rng: np.random.Generator,
        trainable: bool = True,
        regularizer: Any = None,
    ) -> Tensor:
        from dlcli.nn.initializers import get_initializer

        value = get_initializer(initializer)(shape, rng).astype(np.float32)
        w = Tensor(value, requires_grad=trainable, name=name)
        self.params[name] = w
        if regularizer is not None:
            self.regularizers[name] = regularizer
        return w

    def build(self, input_shape: Shape, rng: np.random.Generator) -> Shape:
        """Create weights for this input shape; return the output shape. Default: no weights."""
        self.input_shape = self.output_shape = tuple(input_shape)
        self.built = True
        return self.output_shape

    @abc.abstractmethod
    def call(self, x: Tensor, training: bool = False) -> Tensor:
        """Compute this layer's output for a batch."""

    def __call__(self, x: Tensor, training: bool = False) -> Tensor:
        return self.call(x, training=training)

    # -- facts ----------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """The constructor arguments; type(self)(**config) rebuilds the layer."""
        return {"name": self.name}

    @property
    def trainable_weights(self) -> list[Tensor]:
        return [w for w in self.params.values() if w.requires_grad]

    @property
    def non_trainable_weights(self) -> list[Tensor]:
        return [w for w in self.params.values() if not w.requires_grad]

    def count_params(self) -> int:
        return sum(w.size for w in self.params.values())

    def macs(self) -> int:
        """Forward multiply-adds for one sample (0 for layers that do no arithmetic to speak of)."""
        return 0

    def regularization_loss(self) -> Tensor | None:
        """Sum of this layer's regularization penalties, or None."""
        total = None
        for name, reg in self.regularizers.items():
            term = reg(self.params[name])
            total = term if total is None else total + term
        return total
