"""Sequential: a stack of layers built for one input shape from one seed."""

from __future__ import annotations

import math
from collections.abc import Iterable
from types import ModuleType
from typing import Any

import numpy as np

from dlcli.core.backend import get_array_module, to_host, xp_for
from dlcli.core.ops.activations import relu
from dlcli.core.tensor import Tensor
from dlcli.errors import DlcliError
from dlcli.nn.layers.base import Layer, Shape, build_in_order
from dlcli.nn.layers.pool import MaxPool2D

# activations the trainer folds into the loss (softmax/sigmoid + cross-entropy from logits)
_FUSABLE = ("softmax", "sigmoid")


def _run(layers: list[Layer], x: Tensor, training: bool) -> Tensor:
    """Apply the layers in order.

    A layer that ends in a ReLU followed by a MaxPool2D hands the pool its input before the
    ReLU, and the pool applies it (ops.max_pool2d's relu): max_pool(relu(x)) equals
    relu(max_pool(x)) in value and gradient, and the ReLU then costs a quarter of the passes.
    """
    i = 0
    while i < len(layers):
        layer, after = layers[i], layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(after, MaxPool2D) and getattr(layer, "activation_fn", None) is relu:
            x = after.call(layer.pre_activation(x, training=training), training, relu=True)
            i += 2
        else:
            x = layer(x, training=training)
            i += 1
    return x


class ModelError(DlcliError, ValueError):
    """A model that cannot be made as asked: duplicate layer names, weights that do not match."""


class Sequential:
    """Layers applied one after the other.

    Example:
        model = Sequential([Flatten(), Dense(128, "relu"), Dense(10, "softmax")], (28, 28, 1))
        model.build(seed=42)
        probs = model(Tensor(x))
    """

    def __init__(
        self, layers: Iterable[Layer], input_shape: Iterable[int], name: str | None = None
    ) -> None:
        self.layers: list[Layer] = list(layers)
        self.input_shape: tuple[int, ...] = tuple(int(n) for n in input_shape)
        self.name = name or "sequential"
        self.output_shape: Shape | None = None
        self.rng: np.random.Generator | None = None
        self.built = False
        _assign_names(self.walk())

    # -- building ---------------------------------------------------------------------------
    def build(self, seed: int) -> Sequential:
        """Create every weight from one generator, in layer order; check every shape.

        Raises:
            ShapeError: naming the layer index and type, e.g.
                "layer 3 (Conv2D): kernel (5, 5) is larger than its input (3, 3, 64)".
        """
        rng = np.random.default_rng(seed)
        self.output_shape = build_in_order(self.layers, self.input_shape, rng)
        self.built = True
        # the same stream, now past the weights, drives dropout
        self.set_rng(rng)
        return self

    def walk(self) -> list[Layer]:
        """Every layer, blocks before the layers inside them, in order."""
        out: list[Layer] = []
        stack = list(reversed(self.layers))
        while stack:
            layer = stack.pop()
            out.append(layer)
            stack.extend(reversed(layer.children))
        return out

    def set_rng(self, rng: Any) -> None:
        """Give the model (and so its dropout layers) a generator; a numpy Generator on the CPU."""
        self.rng = rng
        for layer in self.walk():
            layer.set_rng(rng)

    # -- computing --------------------------------------------------------------------------
    def __call__(self, x: Any, training: bool = False) -> Tensor:
        """The model's output for a batch (after the last layer's activation)."""
        return _run(self.layers, self._input(x), training)

    def logits(self, x: Any, training: bool = False) -> Tensor:
        """Like __call__ but without the last layer's softmax/sigmoid, for a fused loss."""
        *body, last = self.layers
        x = _run(body, self._input(x), training)
        if getattr(last, "activation", None) in _FUSABLE:
            return last.pre_activation(x, training=training)
        return last(x, training=training)

    @property
    def output_activation(self) -> str | None:
        """The last layer's activation name (None when it has none)."""
        return getattr(self.layers[-1], "activation", None) if self.layers else None

    def _input(self, x: Any) -> Tensor:
        if not self.built:
            raise RuntimeError("the model is used before build(seed)")
        if not self.layers:
            raise ModelError("the model has no layers")
        return x if isinstance(x, Tensor) else Tensor(x)

    # -- weights ----------------------------------------------------------------------------
    # blocks hold no weights of their own: the layers inside them do, under their own names
    @property
    def weights(self) -> list[Tensor]:
        return [w for layer in self.walk() for w in layer.params.values()]

    @property
    def trainable_weights(self) -> list[Tensor]:
        return [w for layer in self.walk() for w in layer.params.values() if w.requires_grad]

    @property
    def non_trainable_weights(self) -> list[Tensor]:
        return [w for layer in self.walk() for w in layer.params.values() if not w.requires_grad]

    def regularization_loss(self) -> Tensor | None:
        """Sum of every layer's penalties, or None when no layer has a regularizer."""
        total = None
        for layer in self.walk():
            term = layer.regularization_loss()
            if term is not None:
                total = term if total is None else total + term
        return total

    def count_params(self) -> int:
        return sum(layer.count_params() for layer in self.layers)

    def get_weights(self) -> dict[str, np.ndarray]:
        """Copies of every weight as numpy arrays, keyed "layer_name/weight_name"."""
        return {
            f"{layer.name}/{key}": to_host(w.data).copy()
            for layer in self.walk()
            for key, w in layer.params.items()
        }

    def set_weights(self, weights: dict[str, Any]) -> None:
        """Overwrite every weight in place (so optimizers keep their references).

        Raises:
            ModelError (a ValueError): naming missing or unexpected keys or a shape mismatch.
        """
        own = {f"{layer.name}/{key}": w for layer in self.walk() for key, w in layer.params.items()}
        missing = [k for k in own if k not in weights]
        unexpected = [k for k in weights if k not in own]
        if missing or unexpected:
            parts = []
            if missing:
                parts.append(f"missing {', '.join(missing)}")
            if unexpected:
                parts.append(f"unexpected {', '.join(unexpected)}")
            raise ModelError(f"the weights do not match the model: {'; '.join(parts)}")
        for key, w in own.items():
            shape = tuple(np.shape(weights[key]))
            if shape != w.shape:
                raise ModelError(
                    f"weight {key} has shape {shape} but the model expects {w.shape}"
                )
        for key, w in own.items():
            xp = get_array_module(w.data)
            w.data[...] = xp.asarray(weights[key], dtype=w.data.dtype)

    def to(self, xp: ModuleType | str) -> Sequential:
        """Move every weight (and gradient) to numpy or cupy; xp may also be "cpu" or "gpu"."""
        if isinstance(xp, str):
            xp = xp_for(xp)
        for w in self.weights:
            w.data = _move(w.data, xp)
            if w.grad is not None:
                w.grad = _move(w.grad, xp)
        if self.rng is not None:
            # dropout derives a fresh device generator from the model's numpy generator
            self.set_rng(self.rng)
        return self

    # -- facts ------------------------------------------------------------------------------
    def summary_rows(self) -> list[dict[str, Any]]:
        """One dict per layer: name, type, output_shape, params, trainable_params, macs,
        activation_bytes (float32 output bytes for one sample), depth (0 for the model's own
        layers, 1 for the layers of a block, ...). A block's row counts its layers' totals."""
        rows: list[dict[str, Any]] = []

        def add(layer: Layer, depth: int) -> None:
            rows.append({
                "name": layer.name,
                "type": getattr(layer, "summary_type", type(layer).__name__),
                "output_shape": tuple(layer.output_shape),
                "params": layer.count_params(),
                "trainable_params": sum(w.size for w in layer.trainable_weights),
                "macs": layer.macs(),
                "activation_bytes": 4 * math.prod(layer.output_shape),
                "depth": depth,
            })
            for child in layer.children:
                add(child, depth + 1)

        for layer in self.layers:
            add(layer, 0)
        return rows

    def get_config(self) -> dict[str, Any]:
        """Everything needed to rebuild the model before its weights are loaded."""
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "layers": [{"type": type(layer).__name__, **layer.get_config()}
                       for layer in self.layers],
        }


def _move(a: Any, xp: ModuleType) -> Any:
    return to_host(a) if xp is np else xp.asarray(a)


def _assign_names(layers: list[Layer]) -> None:
    """Give unnamed layers unique Keras-style names: dense, dense_1, ...; reject duplicates."""
    taken: set[str] = set()
    for i, layer in enumerate(layers):
        if layer.name is None:
            continue
        if not isinstance(layer.name, str) or not layer.name or "/" in layer.name:
            raise ModelError(f"layer {i} ({type(layer).__name__}): name must be a non-empty "
                             f"string without '/', got {layer.name!r}")
        if layer.name in taken:
            raise ModelError(f"layer {i} ({type(layer).__name__}): the name {layer.name!r} "
                             "is used by an earlier layer")
        taken.add(layer.name)
    counts: dict[str, int] = {}
    for layer in layers:
        if layer.name is not None:
            continue
        base = layer.default_name
        while True:
            n = counts.get(base, 0)
            counts[base] = n + 1
            candidate = base if n == 0 else f"{base}_{n}"
            if candidate not in taken:
                break
        layer.name = candidate
        taken.add(candidate)
