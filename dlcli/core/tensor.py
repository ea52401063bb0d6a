"""Tensor and Function: eager, define-by-run reverse-mode autodiff over numpy/cupy arrays.

A Tensor holds an array (`data`), its gradient (`grad`) and the Function that made it.
A Function sees raw arrays only: `forward(*xs)` computes the output, `backward(gy)`
returns one gradient per input. `Tensor.backward()` sorts the recorded graph once
(iteratively, so deep graphs do not hit the recursion limit), walks it in reverse,
accumulates gradients and then releases the graph.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from dlcli.core.backend import DEFAULT_DTYPE, get_array_module, host_float, to_host

_grad_enabled = True


@contextmanager
def no_grad() -> Iterator[None]:
    """Within this block operations record no graph (inference, optimizer updates)."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def is_grad_enabled() -> bool:
    return _grad_enabled


def unbroadcast(g: Any, shape: tuple[int, ...]) -> Any:
    """Sum a gradient that was broadcast back down to `shape` (the one helper every op uses)."""
    if g.shape == shape:
        return g
    given = g.shape
    extra = g.ndim - len(shape)
    if extra > 0:
        g = g.sum(axis=tuple(range(extra)))
    if extra >= 0:
        axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
        if axes:
            g = g.sum(axis=axes, keepdims=True)
    # a gradient that is not the input's shape up to broadcasting is a bug in the op's backward;
    # reshaping it would silently scramble it (e.g. a (4, 3) gradient for a (3, 4) input)
    if g.shape != shape:
        raise ValueError(f"gradient of shape {given} does not fit an input of shape {shape}")
    return g


class Function(abc.ABC):
    """One differentiable operation. Subclasses keep hyperparameters and saved arrays on self."""

    inputs: tuple[Tensor, ...] = ()
    # needs_input_grad[i] is set before forward, so an op can skip work nobody needs.
    needs_input_grad: tuple[bool, ...] = ()

    @classmethod
    def apply(cls, *inputs: Any, **hyper: Any) -> Tensor:
        """Run the op on Tensors (or constants) and record it when a gradient is needed."""
        tensors = _as_tensors(inputs)
        op = cls(**hyper)
        op.needs_input_grad = tuple(_grad_enabled and t.requires_grad for t in tensors)
        y = op.forward(*(t.data for t in tensors))
        out = Tensor(y)
        if any(op.needs_input_grad):
            op.inputs = tensors
            out.requires_grad = True
            out._op = op
        return out

    @abc.abstractmethod
    def forward(self, *xs: Any) -> Any:
        """Compute the output array from the input arrays."""

    @abc.abstractmethod
    def backward(self, gy: Any) -> Any:
        """Return the gradient for each input (a tuple, or one array for a single input)."""


def _as_tensors(inputs: tuple[Any, ...]) -> tuple[Tensor, ...]:
    like = next((x for x in inputs if isinstance(x, Tensor)), None)
    if like is None:
        return tuple(Tensor(x) for x in inputs)
    xp = get_array_module(like.data)
    return tuple(
        x if isinstance(x, Tensor)
        else _scalar(x, like.data.dtype) if isinstance(x, int | float) and not isinstance(x, bool)
        else Tensor(xp.asarray(x, dtype=like.data.dtype)) for x in inputs
    )


def _scalar(value: float, dtype: Any) -> Tensor:
    """A Python number as a constant holding a numpy scalar of `dtype`: ops get it as a kernel
    argument, where an array would be a new device allocation and upload on every call."""
    t = Tensor.__new__(Tensor)
    t.data, t.grad, t.requires_grad, t.name, t._op = dtype.type(value), None, False, None, None
    return t


class Tensor:
    """An n-dimensional array that records the operations made on it."""

    __array_priority__ = 1000  # so numpy scalars on the left defer to Tensor's operators

    def __init__(self, data: Any, requires_grad: bool = False, name: str | None = None) -> None:
        if isinstance(data, Tensor):
            data = data.data
        xp = get_array_module(data)
        if not hasattr(data, "dtype") or data.dtype.kind not in "fiub":
            data = xp.asarray(data, dtype=DEFAULT_DTYPE)
        elif not isinstance(data, xp.ndarray):
            data = xp.asarray(data)  # numpy scalars -> 0-d arrays
        self.data = data
        self.grad: Any = None
        self.requires_grad = requires_grad
        self.name = name
        self._op: Function | None = None

    # -- array facts -------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return int(self.data.size)

    @property
    def dtype(self) -> Any:
        return self.data.dtype

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({self.data!r}{grad})"

    def numpy(self) -> np.ndarray:
        return to_host(self.data)

    def item(self) -> float:
        return host_float(self.data) if self.data.size == 1 else _not_scalar(self)

    def detach(self) -> Tensor:
        """The same data, cut from the graph."""
        return Tensor(self.data)

    def zero_grad(self) -> None:
        self.grad = None

    # -- backpropagation ---------------------------------------------------------------
    def backward(self, grad: Any = None) -> None:
        """Backpropagate from this tensor (a scalar unless `grad` is given) into every leaf."""
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad")
        xp = get_array_module(self.data)
        if grad is None:
            if self.data.size != 1:
                _not_scalar(self)
            grad = xp.ones_like(self.data)
        order = _topological_order(self)
        grads: dict[int, Any] = {id(self): grad}
        for node in reversed(order):
            g = grads.pop(id(node), None)
            op = node._op
            if op is None:  # a leaf: accumulate, never overwrite
                if g is not None:
                    node.grad = g if node.grad is None else node.grad + g
                continue
            if g is not None:
                gxs = op.backward(g)
                if not isinstance(gxs, tuple):
                    gxs = (gxs,)
                for x, gx in zip(op.inputs, gxs, strict=True):
                    if gx is None or not x.requires_grad:
                        continue
                    try:
                        gx = unbroadcast(gx, x.data.shape)
                    except ValueError as e:
                        raise ValueError(f"{type(op).__name__}.backward: {e}") from None
                    key = id(x)
                    grads[key] = gx if key not in grads else grads[key] + gx
            # release the graph as we go so memory does not grow from step to step
            node._op = None
            op.inputs = ()

    # -- operators (the ops live in dlcli.core.ops) ------------------------------------
    def __add__(self, other: Any) -> Tensor:
        return ops.add(self, other)

    def __radd__(self, other: Any) -> Tensor:
        return ops.add(other, self)

    def __sub__(self, other: Any) -> Tensor:
        return ops.sub(self, other)

    def __rsub__(self, other: Any) -> Tensor:
        return ops.sub(other, self)

    def __mul__(self, other: Any) -> Tensor:
        return ops.mul(self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return ops.mul(other, self)

    def __truediv__(self, other: Any) -> Tensor:
        return ops.div(self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return ops.div(other, self)

    def __neg__(self) -> Tensor:
        return ops.neg(self)

    def __pow__(self, exponent: Any) -> Tensor:
        return ops.pow(self, exponent)

    def __matmul__(self, other: Any) -> Tensor:
        return ops.matmul(self, other)

    def sum(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return ops.sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return ops.mean(self, axis=axis, keepdims=keepdims)

    def max(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return ops.max(self, axis=axis, keepdims=keepdims)

    def reshape(self, *shape: Any) -> Tensor:
        if len(shape) == 1 and isinstance(shape[0], tuple | list):
            shape = tuple(shape[0])
        return ops.reshape(self, shape)

    def transpose(self, *axes: Any) -> Tensor:
        if len(axes) == 1 and isinstance(axes[0], tuple | list):
            axes = tuple(axes[0])
        return ops.transpose(self, axes or None)

    @property
    def T(self) -> Tensor:
        return ops.transpose(self, None)

    def exp(self) -> Tensor:
        return ops.exp(self)

    def log(self) -> Tensor:
        return ops.log(self)

    def sqrt(self) -> Tensor:
        return ops.sqrt(self)


def _topological_order(root: Tensor) -> list[Tensor]:
    """Inputs before outputs, over the nodes that need a gradient; iterative DFS."""
    order: list[Tensor] = []
    visited: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        if node._op is not None:
            for parent in node._op.inputs:
                if parent.requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
    return order


def _not_scalar(t: Tensor) -> Any:
    raise RuntimeError(f"expected a tensor with one element, got shape {t.shape}")


from dlcli.core import ops  # noqa: E402  (ops import Tensor; imported last to break the cycle)
