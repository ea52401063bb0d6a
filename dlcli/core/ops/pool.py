"""2-D pooling over NHWC images: max, average (TF 'same' rules) and global average.

Every pool works on one strided view per pool offset (ph*pw views of shape (N, Ho, Wo, C)),
so the Python loops run over the pool offsets only, never over pixels or batch items.
When the windows tile the input exactly (stride == pool, no padding, no leftover rows),
the gradient is written straight into an uninitialised array instead of being added
into a zeroed, padded one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dlcli.core.backend import get_array_module, reshape_view
from dlcli.core.ops.conv import (
    Padding,
    conv_output_size,
    normalize_padding,
    pad_hw,
    pair,
    resolve_padding,
)
from dlcli.core.parallel import rowwise
from dlcli.core.tensor import Function, Tensor


class _Pool(Function):
    """Shared geometry: pool size, strides, explicit padding, output size."""

    def __init__(self, pool_size: tuple[int, int], strides: tuple[int, int], padding: str) -> None:
        self.pool, self.strides, self.padding = pool_size, strides, padding

    def _setup(self, x: Any) -> None:
        if x.ndim != 4:
            raise ValueError(f"pooling expects (N, H, W, C) input, got shape {tuple(x.shape)}")
        n, h, w, c = x.shape
        self.x_shape = x.shape
        self.pads: Padding = resolve_padding(self.padding, (h, w), self.pool, self.strides)
        ho = conv_output_size(h, self.pool[0], self.strides[0], self.pads[0])
        wo = conv_output_size(w, self.pool[1], self.strides[1], self.pads[1])
        if ho < 1 or wo < 1:
            raise ValueError(f"pool size {self.pool} does not fit input {(h, w)}")
        self.out_hw = (ho, wo)
        (t, b), (l, r) = self.pads
        # exact tiling: every input cell lies in exactly one window
        self.tiles = (
            self.strides == self.pool and t == b == l == r == 0
            and ho * self.pool[0] == h and wo * self.pool[1] == w
        )  # fmt: skip

    def _views(self, a: Any) -> list[Any]:
        """One (N, Ho, Wo, C) view of the padded array `a` per pool offset, row-major."""
        n, _, _, c = a.shape
        (ph, pw), (sh, sw), (ho, wo) = self.pool, self.strides, self.out_hw
        if self.tiles:
            a6 = reshape_view(a, (n, ho, ph, wo, pw, c))  # backward writes through it
            return [a6[:, :, p, :, q] for p in range(ph) for q in range(pw)]
        return [
            a[:, p : p + sh * (ho - 1) + 1 : sh, q : q + sw * (wo - 1) + 1 : sw]
            for p in range(ph)
            for q in range(pw)
        ]

    def _grad_buffer(self, xp: Any, dtype: Any) -> Any:
        """Array the size of the padded input that receives the gradient."""
        n, h, w, c = self.x_shape
        if self.tiles:
            return xp.empty(self.x_shape, dtype=dtype)
        (t, b), (l, r) = self.pads
        return xp.zeros((n, h + t + b, w + l + r, c), dtype=dtype)

    def _crop(self, gpad: Any) -> Any:
        (t, _), (l, _) = self.pads
        _, h, w, _ = self.x_shape
        return gpad[:, t : t + h, l : l + w]

    @property
    def _overlap(self) -> bool:
        return self.strides[0] < self.pool[0] or self.strides[1] < self.pool[1]


class MaxPool2D(_Pool):
    """Max over each window; the gradient goes to the first maximum in row-major order.

    With relu=True the op is max_pool(relu(x)), computed as relu(max_pool(x)): the two are
    equal, and so are their gradients (a window whose maximum is <= 0 passes no gradient
    either way; otherwise the first maximum of x is the first maximum of relu(x)), but the
    ReLU then runs on the pooled output, a quarter of the size for 2x2 pools, and folds
    into the passes the pool makes anyway. Both passes run on a share of the images per
    thread (`rowwise`).
    """

    def __init__(self, pool_size: tuple[int, int], strides: tuple[int, int], padding: str,
                 relu: bool = False) -> None:
        super().__init__(pool_size, strides, padding)
        self.relu = relu

    def forward(self, x):
        xp = get_array_module(x)
        self._setup(x)
        xpad = pad_hw(x, self.pads, -np.inf, scratch=True)
        y = xp.empty((x.shape[0], *self.out_hw, x.shape[3]), dtype=x.dtype)
        # the index of the winning offset per output cell, for backward
        self.arg = None
        if self.needs_input_grad[0]:
            small = self.pool[0] * self.pool[1] < 256
            self.arg = xp.empty(y.shape, dtype=np.uint8 if small else np.int32)
        rowwise(self._max, xpad, y, *(() if self.arg is None else (self.arg,)))
        self.y = y if self.relu and self.arg is not None else None
        return y

    def _max(self, xpad, y, arg=None):
        xp = get_array_module(xpad)
        views = self._views(xpad)
        xp.copyto(y, views[0])
        if arg is not None:
            arg[...] = 0
        # arg is kept branch-free (np.where and masked assignment are several times slower
        # on random masks): offsets come in increasing order, so max(arg, k * (v > y))
        # records the latest strict improvement, which leaves ties with the first maximum
        for k, v in enumerate(views[1:], start=1):
            if arg is not None:
                gt = xp.greater(v, y)
                # bools are bytes 0/1: view them as uint8 instead of copying
                gt = gt.view(np.uint8) if arg.dtype == np.uint8 else gt.astype(np.int32)
                gt *= k
                xp.maximum(arg, gt, out=arg)
            xp.maximum(y, v, out=y)
        if self.relu:
            xp.maximum(y, 0, out=y)

    def backward(self, gy):
        xp = get_array_module(gy)
        gpad = self._grad_buffer(xp, gy.dtype)
        rowwise(self._route, gpad, gy, self.arg, *(() if self.y is None else (self.y,)))
        self.arg = self.y = None
        return gpad if self.tiles else self._crop(gpad)

    def _route(self, gpad, gy, arg, y=None):
        """Send each gradient to the offset that won in forward (none where relu gave 0)."""
        xp = get_array_module(gy)
        if y is not None:
            gy = gy * (y > 0)
        for k, v in enumerate(self._views(gpad)):
            hit = arg == k
            if self._overlap:
                v += gy * hit
            else:
                xp.multiply(gy, hit, out=v)


class AvgPool2D(_Pool):
    """Mean over each window; with 'same' padding the padded cells are not counted (TF)."""

    def forward(self, x):
        xp = get_array_module(x)
        self._setup(x)
        views = self._views(pad_hw(x, self.pads, scratch=True))
        y = views[0].copy()
        for v in views[1:]:
            y += v
        self.count = self._count(xp, x.dtype)
        y /= self.count
        return y

    def _count(self, xp: Any, dtype: Any) -> Any:
        """Real (unpadded) cells per window: (Ho, Wo, 1), or a plain number without padding."""
        (t, b), (l, r) = self.pads
        if t == b == l == r == 0:
            return float(self.pool[0] * self.pool[1])
        _, h, w, _ = self.x_shape

        def along(size: int, k: int, s: int, before: int, n_out: int) -> Any:
            start = xp.arange(n_out) * s - before
            return xp.minimum(start + k, size) - xp.maximum(start, 0)

        ch = along(h, self.pool[0], self.strides[0], t, self.out_hw[0])
        cw = along(w, self.pool[1], self.strides[1], l, self.out_hw[1])
        return (ch[:, None] * cw[None, :])[:, :, None].astype(dtype)

    def backward(self, gy):
        xp = get_array_module(gy)
        g = gy / self.count
        gpad = self._grad_buffer(xp, g.dtype)
        for v in self._views(gpad):
            if self._overlap:
                v += g
            else:
                v[...] = g
        return gpad if self.tiles else self._crop(gpad)


class GlobalAvgPool2D(Function):
    """(N, H, W, C) -> (N, C), the mean over H and W."""

    def forward(self, x):
        if x.ndim != 4:
            raise ValueError(f"global_avg_pool2d expects (N, H, W, C), got shape {tuple(x.shape)}")
        self.x_shape = x.shape
        return x.mean(axis=(1, 2))

    def backward(self, gy):
        xp = get_array_module(gy)
        n, h, w, c = self.x_shape
        return xp.broadcast_to((gy / (h * w))[:, None, None, :], self.x_shape)


def _pool_args(pool_size: Any, strides: Any, padding: Any) -> dict[str, Any]:
    pool = pair(pool_size, "pool_size")
    return {
        "pool_size": pool,
        "strides": pool if strides is None else pair(strides, "strides"),
        "padding": normalize_padding(padding, allow_explicit=False),
    }


def max_pool2d(
    x: Tensor, pool_size: Any = (2, 2), strides: Any = None, padding: str = "valid",
    relu: bool = False,
) -> Tensor:
    """Max pooling, NHWC; strides default to pool_size; 'same' pads with -inf.

    relu=True gives max_pool2d(relu(x)) (values and gradients) in fewer passes.

    Example:
        y = max_pool2d(x, 2)  # (N, 28, 28, C) -> (N, 14, 14, C)
    """
    return MaxPool2D.apply(x, **_pool_args(pool_size, strides, padding), relu=bool(relu))


def avg_pool2d(
    x: Tensor, pool_size: Any = (2, 2), strides: Any = None, padding: str = "valid"
) -> Tensor:
    """Average pooling, NHWC; with 'same' padding the average is over real cells only (TF).

    Example:
        y = avg_pool2d(x, 3, strides=1, padding="same")
    """
    return AvgPool2D.apply(x, **_pool_args(pool_size, strides, padding))


def global_avg_pool2d(x: Tensor) -> Tensor:
    """Mean over height and width: (N, H, W, C) -> (N, C)."""
    return GlobalAvgPool2D.apply(x)
