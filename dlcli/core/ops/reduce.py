"""Reductions over axes: sum, mean, max."""

from __future__ import annotations

from typing import Any

from dlcli.core.backend import get_array_module
from dlcli.core.tensor import Function, Tensor


def _axes(axis: Any, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    return tuple(a % ndim for a in axis)


def _expand(gy: Any, shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool) -> Any:
    """Put back the reduced axes of gy so it broadcasts against the input."""
    if not keepdims:
        gy = gy.reshape(tuple(1 if i in axes else n for i, n in enumerate(shape)))
    return gy


class Sum(Function):
    def __init__(self, axis: Any = None, keepdims: bool = False) -> None:
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.shape, self.axes = x.shape, _axes(self.axis, x.ndim)
        return x.sum(axis=self.axes, keepdims=self.keepdims)

    def backward(self, gy):
        xp = get_array_module(gy)
        return xp.broadcast_to(_expand(gy, self.shape, self.axes, self.keepdims), self.shape)


class Mean(Function):
    def __init__(self, axis: Any = None, keepdims: bool = False) -> None:
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.shape, self.axes = x.shape, _axes(self.axis, x.ndim)
        self.count = 1
        for a in self.axes:
            self.count *= x.shape[a]
        return x.mean(axis=self.axes, keepdims=self.keepdims)

    def backward(self, gy):
        xp = get_array_module(gy)
        g = _expand(gy, self.shape, self.axes, self.keepdims) / self.count
        return xp.broadcast_to(g, self.shape)


class Max(Function):
    """Max over axes; ties share the gradient equally, as for a subgradient."""

    def __init__(self, axis: Any = None, keepdims: bool = False) -> None:
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.x, self.axes = x, _axes(self.axis, x.ndim)
        self.y = x.max(axis=self.axes, keepdims=True)
        return self.y if self.keepdims else self.y.reshape(
            tuple(n for i, n in enumerate(x.shape) if i not in self.axes)
        )

    def backward(self, gy):
        mask = self.x == self.y
        # counted in gy's dtype: an int64 count would turn float32 gradients into float64
        count = mask.sum(axis=self.axes, keepdims=True, dtype=gy.dtype)
        return mask * (_expand(gy, self.x.shape, self.axes, self.keepdims) / count)


def sum(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    return Sum.apply(x, axis=axis, keepdims=keepdims)


def mean(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
    return Mean.apply(x, axis=axis, keepdims=keepdims)


def max(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    return Max.apply(x, axis=axis, keepdims=keepdims)
