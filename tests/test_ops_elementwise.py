"""Every op of elementwise.py, reduce.py and shape.py: forward vs numpy, backward vs differences."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from dlcli.core import ops
from dlcli.core.gradcheck import check_forward, check_grad
from dlcli.core.tensor import Tensor


def make(shape: tuple[int, ...], domain: str = "any", seed: int = 0) -> np.ndarray:
    """Random inputs in a domain where the op is smooth: any, pos (> 0.5), away (|x| > 0.2)."""
    x = np.random.default_rng(seed).standard_normal(shape)
    if domain == "pos":
        return np.abs(x) + 0.5
    if domain == "away":
        return np.sign(x + (x == 0)) * (np.abs(x) + 0.2)
    return x


# id, op on Tensors, numpy reference (None: the same code runs on arrays), input shapes, domain
Case = tuple[str, Callable[..., Any], Callable[..., Any] | None, list[tuple[int, ...]], str]


def red(kind: str, axis: Any = None, keepdims: bool = False) -> Callable[[Any], Any]:
    """x.sum / x.mean / x.max with the same arguments: runs on a Tensor and on an ndarray."""
    return lambda x: getattr(x, kind)(axis=axis, keepdims=keepdims)


def item(name: str, index: Any, shape: tuple[int, ...]) -> Case:
    return (name, lambda x: ops.getitem(x, index), lambda x: x[index], [shape], "any")


S234 = (2, 3, 4)
CASES: list[Case] = [
    ("add", ops.add, np.add, [(3, 5), (3, 5)], "any"),
    ("add_batch1", ops.add, np.add, [(1, 7), (1, 7)], "any"),
    ("sub", ops.sub, np.subtract, [(4, 3), (4, 3)], "any"),
    ("sub_bcast", ops.sub, np.subtract, [(2, 1, 3), (5, 1)], "any"),
    ("mul", ops.mul, np.multiply, [(3, 5), (3, 5)], "any"),
    ("mul_bcast", ops.mul, np.multiply, [(7,), (2, 7)], "any"),
    ("div", ops.div, np.divide, [(3, 5), (3, 5)], "away"),
    ("div_bcast", ops.div, np.divide, [(2, 3), (3,)], "away"),
    ("neg", ops.neg, np.negative, [(2, 3, 1)], "any"),
    ("pow2", lambda x: ops.pow(x, 2), lambda x: x**2, [(3, 4)], "any"),
    ("pow3", lambda x: x**3, None, [(5,)], "any"),
    ("pow_half", lambda x: ops.pow(x, 0.5), np.sqrt, [(3, 2)], "pos"),
    ("pow_neg", lambda x: ops.pow(x, -1.5), lambda x: x**-1.5, [(1, 4)], "pos"),
    ("pow1", lambda x: ops.pow(x, 1), lambda x: x, [(3,)], "any"),
    ("exp", ops.exp, np.exp, [(3, 5)], "any"),
    ("log", ops.log, np.log, [(3, 5)], "pos"),
    ("sqrt", ops.sqrt, np.sqrt, [(1, 3, 3)], "pos"),
    ("abs", ops.abs_, np.abs, [(3, 5)], "away"),
    ("maximum", ops.maximum, np.maximum, [(4, 3), (4, 3)], "any"),
    ("maximum_bcast", ops.maximum, np.maximum, [(4, 3), (3,)], "any"),
    ("maximum_0", lambda x: ops.maximum(x, 0.0), lambda x: np.maximum(x, 0.0), [(3, 3)], "away"),
    ("minimum", ops.minimum, np.minimum, [(4, 3), (4, 3)], "any"),
    ("minimum_0.5", lambda x: ops.minimum(x, 0.5), lambda x: np.minimum(x, 0.5), [(9,)], "away"),
    ("clip", lambda x: ops.clip(x, -0.5, 0.5), lambda x: np.clip(x, -0.5, 0.5), [(4, 5)], "any"),
    ("clip_lo", lambda x: ops.clip(x, 0.1, None), lambda x: np.maximum(x, 0.1), [(4, 5)], "any"),
    ("clip_hi", lambda x: ops.clip(x, None, 0.1), lambda x: np.minimum(x, 0.1), [(4, 5)], "any"),
    ("sum_fn", lambda x: ops.sum(x), np.sum, [S234], "any"),
    ("sum_all", red("sum"), None, [S234], "any"),
    ("sum_ax0", red("sum", 0), None, [S234], "any"),
    ("sum_ax-1", red("sum", -1), None, [S234], "any"),
    ("sum_ax02", red("sum", (0, 2)), None, [S234], "any"),
    ("sum_keep", red("sum", 1, True), None, [S234], "any"),
    ("sum_all_keep", red("sum", None, True), None, [(3, 1)], "any"),
    ("sum_batch1", red("sum", 0), None, [(1, 5)], "any"),
    ("mean_fn", lambda x: ops.mean(x, axis=0), lambda x: x.mean(axis=0), [(3, 5)], "any"),
    ("mean_all", red("mean"), None, [(3, 5)], "any"),
    ("mean_ax1", red("mean", 1), None, [S234], "any"),
    ("mean_ax-12", red("mean", (-1, 1)), None, [S234], "any"),
    ("mean_keep", red("mean", (0, 2), True), None, [S234], "any"),
    ("max_fn", lambda x: ops.max(x, axis=1), lambda x: x.max(axis=1), [(3, 5)], "any"),
    ("max_all", red("max"), None, [(3, 5)], "any"),
    ("max_ax0", red("max", 0), None, [(4, 3)], "any"),
    ("max_ax-1", red("max", -1), None, [(2, 3, 5)], "any"),
    ("max_ax12", red("max", (1, 2)), None, [(2, 3, 5)], "any"),
    ("max_keep", red("max", 1, True), None, [(2, 3, 5)], "any"),
    ("max_all_keep", red("max", None, True), None, [(2, 3)], "any"),
    ("max_batch1", red("max", 1), None, [(1, 6)], "any"),
    ("matmul", ops.matmul, np.matmul, [(3, 4), (4, 5)], "any"),
    ("matmul_op", lambda a, b: a @ b, None, [(1, 7), (7, 1)], "any"),
    ("matmul_batched", ops.matmul, np.matmul, [(2, 3, 4), (2, 4, 5)], "any"),
    ("matmul_bcast", ops.matmul, np.matmul, [(2, 3, 4), (4, 5)], "any"),
    ("reshape", lambda x: x.reshape(6, 4), None, [S234], "any"),
    ("reshape_-1", lambda x: ops.reshape(x, (-1,)), lambda x: x.reshape(-1), [S234], "any"),
    ("reshape_tuple", lambda x: x.reshape((4, 3, 2)), None, [S234], "any"),
    ("transpose_T", lambda x: x.T, None, [(3, 5)], "any"),
    ("transpose_fn", lambda x: ops.transpose(x), lambda x: x.transpose(), [S234], "any"),
    ("transpose_102", lambda x: x.transpose(1, 0, 2), None, [S234], "any"),
    ("transpose_201", lambda x: x.transpose((2, 0, 1)), None, [S234], "any"),
    ("transpose_neg", lambda x: x.transpose(-1, 0, 1), None, [S234], "any"),
    ("flatten", ops.flatten, lambda x: x.reshape(x.shape[0], -1), [S234], "any"),
    ("flatten_batch1", ops.flatten, lambda x: x.reshape(1, -1), [(1, 5, 1, 2)], "any"),
    item("getitem_int", 1, (3, 4)),
    item("getitem_slice", (slice(1, None), slice(None, None, 2)), (3, 5)),
    item("getitem_rev", slice(None, None, -1), (4, 2)),
    item("getitem_repeat", np.array([0, 2, 0, 0]), (3, 2)),
    item("getitem_cols", (slice(None), [1, 1, 0]), (2, 3)),
    item("getitem_pairs", (np.arange(3), np.array([1, 0, 1])), (3, 2)),
    item("getitem_mask", np.array([True, False, True]), (3, 2)),
    item("getitem_ellipsis", (Ellipsis, 1), S234),
    item("getitem_newaxis", (None, slice(None)), (3,)),
]
IDS = [c[0] for c in CASES]


def _inputs(shapes: list[tuple[int, ...]], domain: str, dtype: Any = np.float64) -> list[Any]:
    return [make(s, domain, seed=i).astype(dtype) for i, s in enumerate(shapes)]


@pytest.mark.parametrize("name, fn, ref, shapes, domain", CASES, ids=IDS)
def test_forward_matches_numpy(name, fn, ref, shapes, domain) -> None:
    check_forward(fn, ref or fn, _inputs(shapes, domain))


@pytest.mark.parametrize("name, fn, ref, shapes, domain", CASES, ids=IDS)
def test_gradient_matches_central_differences(name, fn, ref, shapes, domain) -> None:
    check_grad(fn, _inputs(shapes, domain))


@pytest.mark.parametrize("name, fn, ref, shapes, domain", CASES, ids=IDS)
def test_float32_in_float32_out(name, fn, ref, shapes, domain) -> None:
    tensors = [Tensor(x, requires_grad=True) for x in _inputs(shapes, domain, np.float32)]
    y = fn(*tensors)
    assert y.dtype == np.float32
    (y * 1.5).sum().backward()
    for t in tensors:
        assert t.grad.dtype == np.float32 and t.grad.shape == t.shape


def test_max_ties_share_the_gradient() -> None:
    x = Tensor(np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]), requires_grad=True)
    x.max(axis=1).sum().backward()
    np.testing.assert_allclose(x.grad, [[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]])


def test_maximum_tie_goes_to_the_first_input() -> None:
    a = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    b = Tensor(np.array([1.0, 3.0]), requires_grad=True)
    ops.maximum(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad, [1.0, 0.0])
    np.testing.assert_array_equal(b.grad, [0.0, 1.0])


def test_clip_and_abs_gradients_at_the_edges() -> None:
    x = Tensor(np.array([-2.0, -0.5, 0.0, 0.3, 0.5, 2.0]), requires_grad=True)
    ops.clip(x, -0.5, 0.5).sum().backward()
    np.testing.assert_array_equal(x.grad, [0, 1, 1, 1, 1, 0])  # bounds are inside
    x.zero_grad()
    ops.abs_(x).sum().backward()
    np.testing.assert_array_equal(x.grad, [-1, -1, 0, 1, 1, 1])


def test_getitem_repeated_indices_accumulate() -> None:
    x = Tensor(np.arange(4.0), requires_grad=True)
    ops.getitem(x, np.array([1, 1, 1, 3])).sum().backward()
    np.testing.assert_array_equal(x.grad, [0, 3, 0, 1])


def test_matmul_with_a_constant_skips_its_gradient() -> None:
    a = Tensor(make((3, 4)), requires_grad=True)
    w = Tensor(make((4, 2), seed=1))
    (a @ w).sum().backward()
    np.testing.assert_allclose(a.grad, np.ones((3, 2)) @ w.data.T)
    assert w.grad is None
