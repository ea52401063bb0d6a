"""Layer: hyperparameters in __init__, weights in build(input_shape), computation in call()."""

from __future__ import annotations

import abc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from dlcli.core.tensor import Tensor
from dlcli.errors import DlcliError

Shape = tuple[int | None, ...]


_SHAPES_ONLY: list[dict[str, tuple[int, ...]]] = []  # innermost shapes_only() notes


@contextmanager
def shapes_only() -> Iterator[dict[str, tuple[int, ...]]]:
    """Inside this block add_weight allocates nothing: it notes "layer/weight" -> shape in the
    dict it yields, so build() can check shapes and sizes of a model too big to make."""
    notes: dict[str, tuple[int, ...]] = {}
    _SHAPES_ONLY.append(notes)
    try:
        yield notes
    finally:
        _SHAPES_ONLY.pop()


class ShapeError(DlcliError, ValueError):
    """A layer cannot take the shape it is given (raised at build, before any data).

    A DlcliError too: a model that does not fit its input is a mistake in the user's config.
    `layer_index` and `layer_type` name the failing layer once a model or block has caught it
    (see `at`); the message is built from them, so no reader needs to parse it.
    """

    def __init__(self, problem: str, layer_index: int | None = None,
                 layer_type: str | None = None, label: str = "layer") -> None:
        self.problem = problem
        self.layer_index = layer_index
        self.layer_type = layer_type
        where = "" if layer_index is None else f"{label} {layer_index} ({layer_type}): "
        super().__init__(where + problem)

    def at(self, index: int, layer: Layer, label: str = "layer") -> ShapeError:
        """This error as raised by the layer at `index` of a model ("block layer" in a block)."""
        return ShapeError(str(self), index, type(layer).__name__, label)


def build_in_order(layers: list[Layer], input_shape: Shape, rng: np.random.Generator,
                   label: str = "layer") -> Shape:
    """Build layers one after the other, each from a clean slate; the last output shape.

    Raises:
        ShapeError: naming the layer, e.g. "layer 3 (Conv2D): kernel (5, 5) is larger ...".
    """
    shape = tuple(input_shape)
    for i, layer in enumerate(layers):
        layer.params.clear()
        layer._learnable.clear()
        layer.regularizers.clear()
        try:
            shape = tuple(layer.build(shape, rng))
        except ShapeError as e:
            raise e.at(i, layer, label) from None
    return shape


class Layer(abc.ABC):
    """Base class. Subclasses set `config` keys from their constructor arguments.

    build(input_shape, rng) gets the shape without the batch axis, creates weights through
    add_weight and returns the output shape; call(x, training) computes on a Tensor.
    """

    default_name = "layer"  # Keras's base name; a Sequential makes it unique (dense, dense_1, ...)

    def __init__(self, name: str | None = None) -> None:
        self.name = name
        self.built = False
        self.input_shape: Shape | None = None
        self.output_shape: Shape | None = None
        self.params: dict[str, Tensor] = {}  # trainable and non-trainable, in creation order
        self.regularizers: dict[str, Any] = {}  # weight name -> Regularizer
        self._learnable: set[str] = set()  # weights learned by gradient when the layer trains
        self._trainable = True

    # -- construction -------------------------------------------------------------------
    def add_weight(
        self,
        name: str,
        shape: tuple[int, ...],
        initializer: Any,
        rng: np.random.Generator,
        trainable: bool = True,
        regularizer: Any = None,
    ) -> Tensor | None:
        from dlcli.nn.initializers import get_initializer

        if _SHAPES_ONLY:  # a dry build: note the shape, make nothing
            notes = _SHAPES_ONLY[-1]
            # layers are unnamed before a Sequential names them: keep same-type ones apart
            key = base = f"{self.name or type(self).__name__}/{name}"
            n = 1
            while key in notes:
                n += 1
                key = f"{base}#{n}"
            notes[key] = tuple(int(d) for d in shape)
            return None
        value = get_initializer(initializer)(shape, rng).astype(np.float32)
        w = Tensor(value, requires_grad=trainable and self._trainable, name=name)
        self.params[name] = w
        if trainable:
            self._learnable.add(name)
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
        if not self.built:
            raise RuntimeError(f"layer {self.name or type(self).__name__} is used before build()")
        return self.call(x, training=training)

    def set_rng(self, rng: Any) -> None:
        """Give the layer the model's random generator; only layers that draw at call time care."""
        return None

    @property
    def children(self) -> list[Layer]:
        """Layers inside this one (a Residual block's); none for ordinary layers."""
        return []

    @property
    def trainable(self) -> bool:
        """False freezes the layer (Keras semantics): its weights get no gradient and are not
        updated; a frozen BatchNorm normalizes with its moving statistics and keeps them."""
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self._trainable = bool(value)
        for name in self._learnable:
            self.params[name].requires_grad = self._trainable

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
