"""Image ops for augmentation, NHWC, vectorized over the batch: per-sample flips, affine warps
(one coordinate grid and one gather), per-image contrast and clipping.

The warp follows TensorFlow's ImageProjectiveTransformV3, which Keras's TensorFlow backend uses:
each output pixel (x, y) reads the input at the point the sample's 2x3 matrix maps it to; that
point is brought inside the image by the fill mode (reflect, wrap, nearest) or, for constant,
a neighbour outside the image reads fill_value; bilinear weights the four neighbours, nearest
takes the closest. Every output is linear in x, so the backward pass scatters the same
weights back (one add.at).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dlcli.core.backend import get_array_module
from dlcli.core.ops.elementwise import clip
from dlcli.core.tensor import Function, Tensor

FILL_MODES = ("reflect", "wrap", "nearest", "constant")
INTERPOLATIONS = ("bilinear", "nearest")


def _map_coordinate(c: Any, length: int, mode: str) -> Any:
    """A continuous coordinate brought into [0, length - 1] by the fill mode (TF's rules)."""
    xp = get_array_module(c)
    if mode == "constant":
        return c  # out-of-range neighbours read fill_value instead
    if length == 1:
        return xp.zeros_like(c)
    if mode == "reflect":  # d c b a | a b c d | d c b a: mirror about the outer pixel edges
        m = xp.mod(c, 2 * length)
        c = xp.where(m >= length, 2 * length - m - 1, m)
    elif mode == "wrap":  # a b c d | a b c d | a b c d
        c = xp.mod(c, length)
    return xp.clip(c, 0, length - 1)


def affine_sampling(
    matrices: np.ndarray, in_hw: tuple[int, int], out_hw: tuple[int, int], fill_mode: str,
    interpolation: str, xp: Any = np, dtype: Any = np.float64,
) -> tuple[Any, Any, Any]:
    """Where each output pixel reads: (index, weight, fill_weight).

    Args:
        matrices: (N, 6) rows [a0, a1, a2, b0, b1, b2]: output pixel (x, y) reads the input at
            (a0 x + a1 y + a2, b0 x + b1 y + b2).
        dtype: of the coordinates and weights (the images' float type).
    Returns:
        index (N, Ho*Wo, K) int64 into the (N*H*W) flattened pixels, weight (N, Ho*Wo, K), and
        fill_weight (N, Ho*Wo) or None: the share of fill_value (constant mode only).
    """
    h, w = in_hw
    ho, wo = out_hw
    m = xp.asarray(matrices, dtype=dtype)
    n = len(m)
    xs = xp.tile(xp.arange(wo, dtype=dtype), ho).reshape(1, -1)
    ys = xp.repeat(xp.arange(ho, dtype=dtype), wo).reshape(1, -1)
    sx = m[:, 0:1] * xs + m[:, 1:2] * ys + m[:, 2:3]
    sy = m[:, 3:4] * xs + m[:, 4:5] * ys + m[:, 5:6]
    sx, sy = _map_coordinate(sx, w, fill_mode), _map_coordinate(sy, h, fill_mode)
    base = (xp.arange(n, dtype=np.int64) * (h * w)).reshape(n, 1)
    if interpolation == "nearest":
        cy, cx = xp.floor(sy + 0.5), xp.floor(sx + 0.5)
        inside = (cy >= 0) & (cy <= h - 1) & (cx >= 0) & (cx <= w - 1)
        index = base + xp.clip(cy, 0, h - 1).astype(np.int64) * w + xp.clip(cx, 0, w - 1).astype(
            np.int64)
        weight = inside.astype(dtype)
        fill = None if fill_mode != "constant" else 1 - weight
        return index[..., None], weight[..., None], fill
    # bilinear: the four neighbours from separable rows and columns
    y0, x0 = xp.floor(sy), xp.floor(sx)
    dy, dx = sy - y0, sx - x0
    rows = [(y0, 1 - dy), (y0 + 1, dy)]
    cols = [(x0, 1 - dx), (x0 + 1, dx)]
    index, weight = [], []
    for ry, wy in rows:
        in_y = (ry >= 0) & (ry <= h - 1)
        iy = base + xp.clip(ry, 0, h - 1).astype(np.int64) * w
        for cx, wx in cols:
            in_x = (cx >= 0) & (cx <= w - 1)
            index.append(iy + xp.clip(cx, 0, w - 1).astype(np.int64))
            weight.append(wy * wx * (in_y & in_x))  # a neighbour outside weighs nothing here
    index_a, weight_a = xp.stack(index, axis=-1), xp.stack(weight, axis=-1)
    # inside the image the four weights add up to 1; the rest is fill_value's (constant mode:
    # other modes map every point inside, where a neighbour outside has weight 0 anyway)
    fill = None if fill_mode != "constant" else 1 - weight_a.sum(axis=-1)
    return index_a, weight_a, fill


class Warp(Function):
    """y[n, p] = sum_k weight[n, p, k] * x[index[n, p, k]] + fill_weight[n, p] * fill_value."""

    def __init__(self, index: Any, weight: Any, fill: Any, out_hw: tuple[int, int],
                 fill_value: float) -> None:
        self.index, self.weight, self.fill = index, weight, fill
        self.out_hw, self.fill_value = out_hw, fill_value

    def forward(self, x):
        n, h, w, c = x.shape
        self.in_shape = x.shape
        flat = x.reshape(n * h * w, c)
        wt = self.weight.astype(x.dtype, copy=False)
        y = (flat[self.index] * wt[..., None]).sum(axis=2)  # (N, Ho*Wo, C)
        if self.fill is not None and self.fill_value != 0:
            y += (self.fill * self.fill_value).astype(x.dtype)[..., None]
        return y.reshape(n, *self.out_hw, c)

    def backward(self, gy):
        xp = get_array_module(gy)
        n, h, w, c = self.in_shape
        g = gy.reshape(n, -1, 1, c) * self.weight.astype(gy.dtype)[..., None]
        gx = xp.zeros((n * h * w, c), dtype=gy.dtype)
        xp.add.at(gx, self.index.reshape(-1), g.reshape(-1, c))
        return gx.reshape(self.in_shape)


def warp(x: Tensor, matrices: np.ndarray, out_hw: tuple[int, int] | None = None,
         fill_mode: str = "reflect", interpolation: str = "bilinear",
         fill_value: float = 0.0) -> Tensor:
    """Resample each image of x (N, H, W, C) through its affine matrix (see affine_sampling).

    Example:
        y = warp(x, np.tile([1, 0, -2, 0, 1, 0], (len(x), 1)))  # content shifted 2 px right
    """
    if fill_mode not in FILL_MODES:
        raise ValueError(f"fill_mode must be one of {FILL_MODES}, got {fill_mode!r}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    h, w = x.shape[1:3]
    out_hw = (h, w) if out_hw is None else out_hw
    xp = get_array_module(x.data)
    # coordinates in the images' precision: float32 places a point within 1e-5 of a pixel
    index, weight, fill = affine_sampling(matrices, (h, w), out_hw, fill_mode, interpolation, xp,
                                          dtype=x.dtype)
    return Warp.apply(x, index=index, weight=weight, fill=fill, out_hw=out_hw,
                      fill_value=float(fill_value))


class Flip(Function):
    """Per-sample flips: rows where flip_h[n] (left-right), columns where flip_v[n]."""

    def __init__(self, flip_h: Any, flip_v: Any) -> None:
        self.flip_h, self.flip_v = flip_h, flip_v

    def _apply(self, a: Any) -> Any:
        xp = get_array_module(a)
        a = xp.where(self.flip_h[:, None, None, None], a[:, :, ::-1], a)
        return xp.where(self.flip_v[:, None, None, None], a[:, ::-1], a)

    def forward(self, x):
        return self._apply(x)

    def backward(self, gy):
        return self._apply(gy)  # a flip is its own inverse and transpose


def flip(x: Tensor, flip_h: Any, flip_v: Any) -> Tensor:
    """Flip image n of x (N, H, W, C) left-right where flip_h[n], upside down where flip_v[n]."""
    xp = get_array_module(x.data)
    return Flip.apply(x, flip_h=xp.asarray(flip_h, dtype=bool),
                      flip_v=xp.asarray(flip_v, dtype=bool))


class Contrast(Function):
    """(x - mean) * factor + mean per image and channel, mean over height and width."""

    def __init__(self, factor: Any) -> None:
        self.factor = factor  # (N,)

    def forward(self, x):
        f = self.factor.astype(x.dtype).reshape(-1, 1, 1, 1)
        mean = x.mean(axis=(1, 2), keepdims=True)
        self.f = f
        return (x - mean) * f + mean

    def backward(self, gy):
        f = self.f
        return gy * f + gy.mean(axis=(1, 2), keepdims=True) * (1 - f)


def contrast(x: Tensor, factor: Any) -> Tensor:
    """Per-image contrast: factor (N,) > 1 spreads values from each channel's mean."""
    xp = get_array_module(x.data)
    return Contrast.apply(x, factor=xp.asarray(factor))


def clip_range(x: Tensor, lo: float, hi: float) -> Tensor:
    """Values clipped to [lo, hi] (augmentation keeps images in their value range)."""
    return clip(x, float(lo), float(hi))
