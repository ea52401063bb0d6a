"""Batch normalization (one fused op with an analytic backward) and inverted dropout."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from dlcli.core.backend import get_array_module
from dlcli.core.ops.conv import column_sum, ones_gemv
from dlcli.core.parallel import rowwise, rowwise_sum, rowwise_sums
from dlcli.core.tensor import Function, Tensor


def _rows(a: Any) -> Any:
    """View (..., C) as 2-D (R, L) with long rows: (N*H, W*C) for images, (N, C) for vectors.

    Per-channel vectors are then tiled to length L, so numpy runs long inner loops
    instead of one short loop per pixel (about twice as fast for C = 32).
    """
    if a.ndim <= 2:
        return a.reshape(-1, a.shape[-1])
    return a.reshape(-1, a.shape[-2] * a.shape[-1])


def _per_channel_sum(r: Any, c: int) -> Any:
    """Sum of a (R, L) row view over everything but the channel: -> (C,)."""
    return column_sum(r).reshape(-1, c).sum(axis=0)


def _summed(reduce: Callable[[Any], Any], *parts: Any) -> Any:
    """The per-channel sums `parts` added over every replica in one call, as x's dtype again
    (carried in float64, so a count is exact)."""
    xp = get_array_module(parts[0])
    both = reduce(xp.concatenate([xp.asarray(p, dtype=np.float64).reshape(-1) for p in parts]))
    return both.astype(parts[0].dtype)


class BatchNorm(Function):
    """y = gamma * (x - mean) / sqrt(var + eps) + beta over all axes but the last.

    Inputs are x, then gamma if `has_gamma`, then beta if `has_beta`. With `reduce` (a sum over
    replicas, e.g. MPI ranks) the batch statistics are those of every replica's batch together.
    """

    def __init__(
        self, running_mean: Any, running_var: Any, training: bool, momentum: float,
        epsilon: float, has_gamma: bool, has_beta: bool,
        reduce: Callable[[Any], Any] | None = None,
    ) -> None:  # fmt: skip
        self.running_mean, self.running_var = running_mean, running_var
        self.training, self.momentum, self.epsilon = training, momentum, epsilon
        self.has_gamma, self.has_beta = has_gamma, has_beta
        self.reduce = reduce if training else None

    def forward(self, x, *params):
        xp = get_array_module(x)
        c = x.shape[-1]
        gamma = params[0] if self.has_gamma else None
        beta = params[-1] if self.has_beta else None
        xr = _rows(x)
        reps = xr.shape[1] // c
        count = x.size // c
        if self.training:
            total = _per_channel_sum(xr, c)
            if self.reduce is not None:  # the sum and the count of every replica's batch
                both = _summed(self.reduce, total, [count])
                total, count = both[:c], int(both[c])
            mean = total / count
        else:
            mean = self.running_mean.astype(x.dtype, copy=False)
        # y is built in xc's buffer; backward recomputes xc from x (which the graph keeps
        # alive anyway), so no second activation-sized array outlives forward
        xc = xp.empty(xr.shape, dtype=xp.result_type(xr, mean))
        mean_t = xp.tile(mean, reps)
        if self.training:
            # each thread squares its rows of xc right after writing them: one hand-off,
            # and the rows are read again while still in cache
            def center(xr, xc):
                xp.subtract(xr, mean_t, out=xc)
                return xp.einsum("ij,ij->j", xc, xc)

            squares = rowwise_sum(center, xr, xc).reshape(-1, c).sum(axis=0)
            if self.reduce is not None:  # about the global mean: two passes, as below
                squares = _summed(self.reduce, squares)
            var = squares / count  # biased, as Keras normalizes
            m = self.momentum
            # Keras: moving = moving * momentum + batch * (1 - momentum), in place
            self.running_mean *= m
            self.running_mean += (1 - m) * mean
            self.running_var *= m
            self.running_var += (1 - m) * var
        else:
            rowwise(lambda xr, xc: xp.subtract(xr, mean_t, out=xc), xr, xc)
            var = self.running_var.astype(x.dtype, copy=False)
        inv_std = 1.0 / xp.sqrt(var + self.epsilon)
        scale = inv_std if gamma is None else gamma * inv_std
        scale_t = xp.tile(scale, reps)
        beta_t = None if beta is None else xp.tile(beta, reps)

        def affine(y):
            y *= scale_t
            if beta_t is not None:
                y += beta_t

        rowwise(affine, xc)
        self.x, self.mean, self.inv_std, self.scale, self.count = x, mean, inv_std, scale, count
        return xc.reshape(x.shape)

    def backward(self, gy):
        xp = get_array_module(gy)
        c = gy.shape[-1]
        gyr, xr = _rows(gy), _rows(self.x)
        reps = gyr.shape[1] // c
        inv_std, scale, mean = self.inv_std, self.scale, self.mean
        # sum(gy) as GEMVs and sum(gy * (x - mean)) from x itself, so no centred copy of x is
        # made (the cancellation costs about as much precision as x - mean does in float32);
        # both in one hand-off to the threads
        sums = rowwise_sums(lambda gy, x: (ones_gemv(gy), xp.einsum("ij,ij->j", gy, x)), gyr, xr)
        sum_gy, sum_gy_x = (a.reshape(-1, c).sum(axis=0) for a in sums)
        sum_gy_xhat = (sum_gy_x - mean * sum_gy) * inv_std
        grads = []
        if self.needs_input_grad[0]:
            scale_t = xp.tile(scale, reps)
            if self.training:
                # through the batch mean and variance as well:
                # gx = scale * (gy - mean(gy) - xhat * mean(gy * xhat)) = scale * gy + a * x + b,
                # two per-channel vectors, so x is read once
                g_sum, g_xhat = sum_gy, sum_gy_xhat
                if self.reduce is not None:  # means over every replica's batch; gamma and
                    both = _summed(self.reduce, sum_gy, sum_gy_xhat)  # beta keep this one's
                    g_sum, g_xhat = both[:c], both[c:]
                a = -scale * inv_std * g_xhat / self.count
                b = -a * mean - scale * g_sum / self.count
                a_t, b_t = xp.tile(a, reps), xp.tile(b, reps)

            def grad_x(gyr, xr, gx):
                xp.multiply(gyr, scale_t, out=gx)
                if self.training:
                    ax = xp.multiply(xr, a_t)
                    ax += b_t
                    gx += ax

            gx = xp.empty(gyr.shape, dtype=xp.result_type(gyr, scale))
            rowwise(grad_x, gyr, xr, gx)
            grads.append(gx.reshape(gy.shape))
        else:
            grads.append(None)
        if self.has_gamma:
            grads.append(sum_gy_xhat)
        if self.has_beta:
            grads.append(sum_gy)
        self.x = None
        return tuple(grads)


def batch_norm(
    x: Tensor,
    gamma: Tensor | None,
    beta: Tensor | None,
    running_mean: Any,
    running_var: Any,
    training: bool,
    momentum: float = 0.99,
    epsilon: float = 1e-3,
    reduce: Callable[[Any], Any] | None = None,
) -> Tensor:
    """Batch normalization over every axis but the last ((N, C) or (N, H, W, C)).

    Args:
        x: input.
        gamma, beta: (C,) scale and offset Tensors, or None (scale=False / center=False).
        running_mean, running_var: raw (C,) arrays; updated in place when training.
        training: batch statistics (True) or the running ones (False).
        momentum, epsilon: as Keras.
        reduce: None, or a function that sums a 1-D array over replicas that each hold part of
            the batch (synchronized BatchNorm over MPI ranks); it is called by every replica at
            the same points (twice in forward, once in backward, each while training only).

    Returns:
        A Tensor of x's shape.

    Example:
        y = batch_norm(x, gamma, beta, moving_mean, moving_var, training=True)
    """
    params = [p for p in (gamma, beta) if p is not None]
    return BatchNorm.apply(
        x, *params, running_mean=running_mean, running_var=running_var, training=bool(training),
        momentum=float(momentum), epsilon=float(epsilon),
        has_gamma=gamma is not None, has_beta=beta is not None, reduce=reduce,
    )  # fmt: skip


def _show(shape: Any) -> str:
    """A noise shape as the YAML writes it: [null, 1, 1, null]."""
    return "[" + ", ".join("null" if n is None else str(n) for n in shape) + "]"


def resolve_noise_shape(noise_shape: Any, shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
    """Keras's noise_shape against an input shape: None entries take the input's size.

    Every other entry must be 1 (the mask is shared along that axis) or the input's size; an
    unknown size (None, the batch axis at build time) accepts any entry.

    Raises:
        ValueError: a wrong length or an entry that does not broadcast, naming both shapes.

    Example:
        resolve_noise_shape([None, 1, 1, None], (8, 5, 5, 3)) == (8, 1, 1, 3)
    """
    given = tuple(noise_shape)
    if len(given) != len(shape):
        raise ValueError(f"noise_shape {_show(given)} has {len(given)} entries; it needs "
                         f"{len(shape)}: the batch axis, then one per axis of the input "
                         f"{tuple(shape[1:])}")
    out = []
    for entry, size in zip(given, shape, strict=True):
        if entry is None:
            out.append(size)
            continue
        if isinstance(entry, bool) or not isinstance(entry, int | np.integer) or entry < 1:
            raise ValueError(f"noise_shape entries must be null or positive integers, got "
                             f"{_show(given)}")
        if entry != 1 and size is not None and entry != size:
            raise ValueError(f"noise_shape {_show(given)} does not fit the input "
                             f"{tuple(shape[1:])} (batch axis first): each entry must be null, "
                             f"1 or the size of its axis")
        out.append(int(entry))
    return tuple(out)


class Dropout(Function):
    """y = x * mask / (1 - rate) with a mask of shape `mask_shape` (x's own, or one that
    broadcasts to it) drawn once in forward."""

    def __init__(self, rate: float, rng: Any, mask_shape: tuple[int, ...] | None = None) -> None:
        self.rate, self.rng, self.mask_shape = rate, rng, mask_shape

    def forward(self, x):
        shape = x.shape if self.mask_shape is None else self.mask_shape
        keep = self.rng.random(shape, dtype=np.float32) >= self.rate
        # the mask carries the 1/(1-rate) scale so backward is one multiply; a smaller mask
        # broadcasts over the axes it shares, so gx keeps x's shape
        self.mask = keep.astype(x.dtype)
        self.mask *= 1.0 / (1.0 - self.rate)
        return x * self.mask

    def backward(self, gy):
        return gy * self.mask


def dropout(
    x: Tensor, rate: float, training: bool, rng: Any, noise_shape: Any = None
) -> Tensor:
    """Inverted dropout: zero each element with probability `rate`, scale the rest by 1/(1-rate).

    Args:
        x: input.
        rate: drop probability in [0, 1).
        training: identity when False.
        rng: numpy (or cupy) Generator, used as rng.random(shape, dtype=float32).
        noise_shape: None (one draw per element), or Keras's noise_shape: one entry per axis of
            x, None for the input's size, 1 to share the draw along that axis
            ([None, 1, 1, None] drops whole channels of NHWC images).

    Example:
        y = dropout(x, 0.5, training=True, rng=np.random.default_rng(0))
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    if not training or rate == 0.0:
        return x
    mask_shape = None
    if noise_shape is not None:
        mask_shape = resolve_noise_shape(noise_shape, x.shape)
    return Dropout.apply(x, rate=float(rate), rng=rng, mask_shape=mask_shape)
