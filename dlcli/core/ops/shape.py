"""matmul and the ops that only move data: reshape, transpose, flatten, getitem."""

from __future__ import annotations

from typing import Any

from dlcli.core.backend import get_array_module
from dlcli.core.parallel import pmatmul
from dlcli.core.tensor import Function, Tensor


class MatMul(Function):
    """a @ b for 2-D a (N, K) and b (K, M), or batched with matching leading axes."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return pmatmul(a, b)

    def backward(self, gy):
        ga = pmatmul(gy, self.b.swapaxes(-1, -2)) if self.needs_input_grad[0] else None
        gb = pmatmul(self.a.swapaxes(-1, -2), gy) if self.needs_input_grad[1] else None
        return ga, gb


class Reshape(Function):
    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape

    def forward(self, x):
        self.in_shape = x.shape
        return x.reshape(self.shape)

    def backward(self, gy):
        return gy.reshape(self.in_shape)


class Transpose(Function):
    def __init__(self, axes: tuple[int, ...] | None) -> None:
        self.axes = axes

    def forward(self, x):
        return x.transpose(self.axes)

    def backward(self, gy):
        if self.axes is None:
            return gy.transpose()
        inverse = [0] * len(self.axes)
        for i, a in enumerate(self.axes):
            inverse[a] = i
        return gy.transpose(inverse)


class GetItem(Function):
    """x[index] for basic or integer-array indexing; repeated indices accumulate."""

    def __init__(self, index: Any) -> None:
        self.index = index

    def forward(self, x):
        self.shape, self.dtype = x.shape, x.dtype
        return x[self.index]

    def backward(self, gy):
        xp = get_array_module(gy)
        gx = xp.zeros(self.shape, dtype=self.dtype)
        xp.add.at(gx, self.index, gy)
        return gx


def matmul(a: Any, b: Any) -> Tensor:
    return MatMul.apply(a, b)


def reshape(x: Tensor, shape: tuple[int, ...]) -> Tensor:
    return Reshape.apply(x, shape=tuple(shape))


def transpose(x: Tensor, axes: tuple[int, ...] | None = None) -> Tensor:
    return Transpose.apply(x, axes=None if axes is None else tuple(axes))


def flatten(x: Tensor) -> Tensor:
    """Keep the batch axis, flatten the rest (Keras Flatten)."""
    return reshape(x, (x.shape[0], -1))


def getitem(x: Tensor, index: Any) -> Tensor:
    return GetItem.apply(x, index=index)
