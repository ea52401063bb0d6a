"""Every op on cupy against numpy: forward values and input gradients, in float64 (and the
float32 a model uses for the ops a training step leans on)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from dlcli.core import Tensor, ops
from dlcli.core.ops import image

pytestmark = pytest.mark.gpu  # and skipped without cupy and a device (conftest)

RTOL, ATOL = 1e-10, 1e-12  # float64: only the order of summation differs


def _inputs(shapes: list[tuple[int, ...]], kind: str, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for s in shapes:
        a = rng.standard_normal(s)
        if kind == "positive":
            a = np.abs(a) + 0.5
        out.append(a)
    return out


def _run(xp: Any, fn: Callable[..., Tensor], arrays: list[np.ndarray], dtype: Any,
         upstream: np.ndarray | None) -> tuple[np.ndarray, list[np.ndarray]]:
    """fn's output and the gradients of sum(output * upstream) as numpy arrays."""
    ts = [Tensor(xp.asarray(a, dtype=dtype), requires_grad=True) for a in arrays]
    y = fn(xp, *ts)
    w = xp.asarray(upstream if upstream is not None else np.ones(y.shape), dtype=dtype)
    (y * Tensor(w)).sum().backward()
    host = (lambda a: a.get()) if xp is not np else np.asarray
    return host(y.data), [None if t.grad is None else host(t.grad) for t in ts]


LABELS = np.array([0, 2, 1, 2, 0])
BINARY = np.array([[0.0], [1.0], [1.0], [0.0], [1.0]])

# (id, fn(xp, *tensors), input shapes, input kind)
CASES: list[tuple[str, Callable[..., Tensor], list[tuple[int, ...]], str]] = [
    ("add", lambda xp, a, b: ops.add(a, b), [(4, 3), (3,)], "normal"),
    ("sub", lambda xp, a, b: ops.sub(a, b), [(4, 3), (4, 1)], "normal"),
    ("mul", lambda xp, a, b: ops.mul(a, b), [(4, 3), (4, 3)], "normal"),
    ("div", lambda xp, a, b: ops.div(a, b), [(4, 3), (4, 3)], "positive"),
    ("scalars", lambda xp, a: (1.0 - a) * 2.5 / 3.0 + 0.5, [(4, 3)], "normal"),
    ("neg", lambda xp, a: ops.neg(a), [(5,)], "normal"),
    ("pow", lambda xp, a: ops.pow(a, 3.0), [(4, 3)], "normal"),
    ("exp", lambda xp, a: ops.exp(a), [(4, 3)], "normal"),
    ("log", lambda xp, a: ops.log(a), [(4, 3)], "positive"),
    ("sqrt", lambda xp, a: ops.sqrt(a), [(4, 3)], "positive"),
    ("abs", lambda xp, a: ops.abs_(a), [(4, 3)], "normal"),
    ("maximum", lambda xp, a, b: ops.maximum(a, b), [(4, 3), (4, 3)], "normal"),
    ("minimum", lambda xp, a, b: ops.minimum(a, b), [(4, 3), (4, 3)], "normal"),
    ("clip", lambda xp, a: ops.clip(a, -0.5, 0.5), [(6, 5)], "normal"),
    *[(name, (lambda f: lambda xp, a: f(a))(getattr(ops, name)), [(6, 5)], "normal")
      for name in ("relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "sigmoid", "tanh",
                   "softplus", "softsign", "silu", "mish", "hard_sigmoid", "hard_silu",
                   "exponential", "log_sigmoid", "celu", "linear", "softmax", "log_softmax")],
    ("gelu_tanh", lambda xp, a: ops.gelu(a, approximate=True), [(6, 5)], "normal"),
    ("sum", lambda xp, a: ops.sum(a, axis=1, keepdims=True), [(4, 3, 2)], "normal"),
    ("mean", lambda xp, a: ops.mean(a, axis=(0, 2)), [(4, 3, 2)], "normal"),
    ("max", lambda xp, a: ops.max(a, axis=-1), [(4, 3, 5)], "normal"),
    ("matmul", lambda xp, a, b: ops.matmul(a, b), [(4, 3), (3, 5)], "normal"),
    ("reshape", lambda xp, a: ops.reshape(a, (6, 2)), [(3, 4)], "normal"),
    ("transpose", lambda xp, a: ops.transpose(a, (2, 0, 1)), [(2, 3, 4)], "normal"),
    ("flatten", lambda xp, a: ops.flatten(a), [(2, 3, 4)], "normal"),
    # repeated indices: the backward's add.at must add, not overwrite
    ("getitem", lambda xp, a: ops.getitem(a, xp.asarray([0, 2, 2, 1, 0])), [(3, 4)], "normal"),
    *[(f"conv2d_{tag}",
       (lambda opts: lambda xp, x, w, b: ops.conv2d(x, w, b, **opts))(kw),
       [(2, 7, 6, c), (3, 3, c, 4), (4,)], "normal")
      for tag, c, kw in (("valid", 3, {}), ("same_s2", 5, {"strides": 2, "padding": "same"}),
                         ("dilated", 5, {"padding": "same", "dilation_rate": 2}),
                         ("pad1", 1, {"padding": 1}))],
    ("max_pool2d", lambda xp, x: ops.max_pool2d(x, 2), [(2, 6, 6, 3)], "normal"),
    ("max_pool2d_same", lambda xp, x: ops.max_pool2d(x, 3, 2, "same"), [(2, 7, 5, 3)],
     "normal"),
    ("avg_pool2d", lambda xp, x: ops.avg_pool2d(x, 3, 1, "same"), [(2, 5, 5, 2)], "normal"),
    ("global_avg_pool2d", lambda xp, x: ops.global_avg_pool2d(x), [(2, 5, 4, 3)], "normal"),
    ("softmax_ce", lambda xp, z: ops.softmax_cross_entropy(z, xp.asarray(LABELS)),
     [(5, 3)], "normal"),
    ("sigmoid_bce", lambda xp, z: ops.sigmoid_binary_crossentropy(z, xp.asarray(BINARY)),
     [(5, 1)], "normal"),
    ("categorical_ce",
     lambda xp, z: ops.categorical_crossentropy(ops.softmax(z), xp.asarray(LABELS)),
     [(5, 3)], "normal"),
    ("binary_ce", lambda xp, z: ops.binary_crossentropy(ops.sigmoid(z), xp.asarray(BINARY)),
     [(5, 1)], "normal"),
    ("mse", lambda xp, p, t: ops.mean_squared_error(p, t.data), [(5, 2), (5, 2)], "normal"),
    ("mae", lambda xp, p, t: ops.mean_absolute_error(p, t.data), [(5, 2), (5, 2)], "normal"),
    ("huber", lambda xp, p, t: ops.huber(p, t.data, delta=0.7), [(5, 2), (5, 2)], "normal"),
    ("flip", lambda xp, x: image.flip(x, [True, False, True], [False, True, True]),
     [(3, 4, 5, 2)], "normal"),
    ("contrast", lambda xp, x: image.contrast(x, [0.5, 1.0, 1.7]), [(3, 4, 5, 2)], "normal"),
    ("warp", lambda xp, x: image.warp(x, np.tile([0.9, 0.1, 0.7, -0.1, 1.1, -0.4], (3, 1))),
     [(3, 6, 5, 2)], "normal"),
    ("warp_nearest_constant",
     lambda xp, x: image.warp(x, np.tile([1.2, 0, -1.0, 0, 0.8, 0.5], (3, 1)),
                              fill_mode="constant", interpolation="nearest"),
     [(3, 6, 5, 2)], "normal"),
]


@pytest.mark.parametrize("name, fn, shapes, kind", CASES, ids=[c[0] for c in CASES])
def test_op_matches_numpy(cp, name, fn, shapes, kind) -> None:
    arrays = _inputs(shapes, kind, seed=len(name))
    y_np, g_np = _run(np, fn, arrays, np.float64, None)
    upstream = np.random.default_rng(1).standard_normal(y_np.shape)
    y_np, g_np = _run(np, fn, arrays, np.float64, upstream)
    y_cp, g_cp = _run(cp, fn, arrays, np.float64, upstream)
    np.testing.assert_allclose(y_cp, y_np, rtol=RTOL, atol=ATOL, err_msg=f"{name} forward")
    for i, (a, b) in enumerate(zip(g_cp, g_np, strict=True)):
        assert (a is None) == (b is None), f"{name} grad {i}"
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=f"{name} grad {i}")


@pytest.mark.parametrize("name", ["conv2d_same_s2", "max_pool2d", "softmax_ce", "matmul"])
def test_float32_ops_match_numpy(cp, name) -> None:
    _, fn, shapes, kind = next(c for c in CASES if c[0] == name)
    arrays = _inputs(shapes, kind, seed=3)
    y_np, g_np = _run(np, fn, arrays, np.float32, None)
    y_cp, g_cp = _run(cp, fn, arrays, np.float32, None)
    assert y_cp.dtype == np.float32
    np.testing.assert_allclose(y_cp, y_np, rtol=1e-5, atol=1e-5)
    for a, b in zip(g_cp, g_np, strict=True):
        if b is not None:
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_batch_norm_statistics_match_numpy(cp) -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((8, 5, 5, 3)) * 2 + 1
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
    upstream = rng.standard_normal(x.shape)
    results = {}
    for xp in (np, cp):
        mean, var = xp.zeros(3), xp.ones(3)
        ts = [Tensor(xp.asarray(a), requires_grad=True) for a in (x, gamma, beta)]
        for _ in range(3):  # the moving statistics after a few steps
            y = ops.batch_norm(*ts, mean, var, training=True, momentum=0.9, epsilon=1e-3)
        (y * Tensor(xp.asarray(upstream))).sum().backward()
        infer = ops.batch_norm(*ts, mean, var, training=False, momentum=0.9, epsilon=1e-3)
        host = (lambda a: a.get()) if xp is cp else np.asarray
        results[xp.__name__] = [host(a) for a in (y.data, infer.data, mean, var,
                                                  *(t.grad for t in ts))]
    for a, b in zip(results["cupy"], results["numpy"], strict=True):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


def test_reshape_views_hold_on_cupy(cp) -> None:
    from dlcli.core.backend import reshape_view

    buf = cp.zeros((6, 5))
    reshape_view(buf[:, :4], (2, 3, 2, 2))[...] = 1  # what im2col writes through
    assert bool(buf[:, :4].all()) and not bool(buf[:, 4].any())
    with pytest.raises(ValueError, match="copies it"):
        reshape_view(buf[:, :4], (24,))
