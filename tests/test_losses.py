"""Losses: values vs numpy (Keras formulas), gradients, extreme logits, label forms, dtypes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dlcli.core import ops
from dlcli.core.gradcheck import check_forward, check_grad
from dlcli.core.tensor import Tensor
from dlcli.data import check_labels
from dlcli.errors import DataError

EPS = 1e-7


def normal(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def labels(n: int, c: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, c, size=n)


def onehot(y: np.ndarray, c: int) -> np.ndarray:
    return np.eye(c)[y]


def log_softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def keras_cce(p: np.ndarray, t: np.ndarray) -> float:
    p = np.clip(p / p.sum(axis=-1, keepdims=True), EPS, 1 - EPS)
    return float(np.mean(-(t * np.log(p)).sum(axis=-1)))


def keras_bce(p: np.ndarray, t: np.ndarray) -> float:
    p = np.clip(p, EPS, 1 - EPS)
    return float(np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p))))


# -- softmax cross-entropy from logits ---------------------------------------------------------
@pytest.mark.parametrize("n, c", [(5, 3), (1, 4), (8, 10), (3, 1)])
def test_softmax_ce_forward_and_gradient(n, c) -> None:
    x, y = normal(n, c), labels(n, c)
    ref = lambda x: -np.mean(log_softmax(x)[np.arange(n), y])  # noqa: E731
    check_forward(lambda t: ops.softmax_cross_entropy(t, y), ref, [x], atol=1e-12)
    check_grad(lambda t: ops.softmax_cross_entropy(t, y), [x])
    check_grad(lambda t: ops.softmax_cross_entropy(t, onehot(y, c)), [x])


def test_softmax_ce_int_labels_equal_one_hot() -> None:
    x, y = normal(6, 4), labels(6, 4)
    a, b, c = (Tensor(x, requires_grad=True) for _ in range(3))
    la = ops.softmax_cross_entropy(a, y)
    lb = ops.softmax_cross_entropy(b, onehot(y, 4))
    lc = ops.softmax_cross_entropy(c, y.reshape(-1, 1))  # (N, 1) labels as Keras accepts
    for loss in (la, lb, lc):
        loss.backward()
    assert la.item() == pytest.approx(lb.item(), abs=1e-14) == pytest.approx(lc.item(), abs=1e-14)
    np.testing.assert_allclose(a.grad, b.grad, atol=1e-15)
    np.testing.assert_allclose(a.grad, c.grad, atol=1e-15)
    np.testing.assert_allclose(a.grad, (np.exp(log_softmax(x)) - onehot(y, 4)) / 6, atol=1e-15)


def test_softmax_ce_probability_rows() -> None:
    x = normal(4, 3)
    t = np.exp(log_softmax(normal(4, 3, seed=7)))  # soft labels
    ref = lambda x: -np.mean((t * log_softmax(x)).sum(axis=-1))  # noqa: E731
    check_forward(lambda a: ops.softmax_cross_entropy(a, t), ref, [x], atol=1e-12)
    check_grad(lambda a: ops.softmax_cross_entropy(a, t), [x])
    check_grad(lambda a: ops.softmax_cross_entropy(a, 2.0 * t), [x])  # rows need not sum to 1


def test_softmax_ce_per_position_labels() -> None:
    x, y = normal(2, 3, 4), labels(6, 4).reshape(2, 3)
    got = ops.softmax_cross_entropy(Tensor(x), y).item()
    want = -np.mean(np.take_along_axis(log_softmax(x), y[..., None], axis=-1))
    assert got == pytest.approx(want, abs=1e-12)
    check_grad(lambda a: ops.softmax_cross_entropy(a, y), [x])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_ce_extreme_logits(dtype) -> None:
    x = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, -1e4], [1e4, 1e4, -1e4]], dtype)
    y = np.array([1, 1, 0])
    t = Tensor(x, requires_grad=True)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss = ops.softmax_cross_entropy(t, y)
        loss.backward()
    # row 0: -log_softmax = 2e4; row 1: 0; row 2: log 2
    assert loss.item() == pytest.approx((2e4 + 0 + math.log(2)) / 3, rel=1e-6)
    want = np.array([[1, -1, 0], [0, 0, 0], [-0.5, 0.5, 0]]) / 3
    np.testing.assert_allclose(t.grad, want, atol=1e-7)
    assert loss.dtype == dtype and t.grad.dtype == dtype


def test_softmax_ce_float32_and_constant_targets() -> None:
    x = Tensor(normal(4, 3).astype(np.float32), requires_grad=True)
    y = Tensor(onehot(labels(4, 3), 3), requires_grad=True)  # a target never gets a gradient
    loss = ops.softmax_cross_entropy(x, y)
    loss.backward()
    assert loss.dtype == np.float32 and x.grad.dtype == np.float32 and y.grad is None
    z = ops.softmax_cross_entropy(Tensor(np.zeros((2, 2), np.float32)), np.array([0, 1]))
    assert z.item() == pytest.approx(math.log(2))


@pytest.mark.parametrize("y, match", [
    (np.array([0, 1, 2]), "shape"),
    (np.zeros((2, 4)), "shape"),
    (np.array(["a", "b"]), "integers"),
])  # fmt: skip
def test_softmax_ce_bad_targets_raise(y, match) -> None:
    with pytest.raises(DataError, match=match):
        ops.softmax_cross_entropy(Tensor(normal(2, 3)), y)


@pytest.mark.parametrize("y, match", [
    (np.array([0, 3]), r"go from 0 to 3.*0\.\.2"),
    (np.array([-1, 0]), r"go from -1 to 0.*0\.\.2"),
    (np.array([0.5, 1.0]), "integer class labels"),
])  # fmt: skip
def test_label_values_are_checked_with_the_data_not_in_the_op(y, match) -> None:
    # reading label values inside the op would make the host wait for the device every batch;
    # the trainer and `dlcli eval` run check_labels on every split and file instead
    with pytest.raises(DataError, match=match):
        check_labels(y, 3, "sparse_categorical_crossentropy")
    loss = ops.softmax_cross_entropy(Tensor(normal(2, 3)), y)  # the op does not look
    assert loss.shape == ()


def test_float_labels_that_are_whole_numbers_are_accepted() -> None:
    x = Tensor(normal(3, 4))
    a = ops.softmax_cross_entropy(x, np.array([0.0, 3.0, 1.0])).item()
    assert a == ops.softmax_cross_entropy(x, np.array([0, 3, 1])).item()


# -- sigmoid binary cross-entropy from logits --------------------------------------------------
@pytest.mark.parametrize("shape", [(6, 1), (5,), (4, 3), (1, 1)], ids=str)
def test_sigmoid_bce_forward_and_gradient(shape) -> None:
    x = normal(*shape) * 3
    y = np.random.default_rng(2).random(shape)  # soft targets in [0, 1]
    ref = lambda x: -np.mean(y * np.log(sigmoid(x)) + (1 - y) * np.log(1 - sigmoid(x)))  # noqa: E731
    check_forward(lambda t: ops.sigmoid_binary_crossentropy(t, y), ref, [x], atol=1e-12)
    check_grad(lambda t: ops.sigmoid_binary_crossentropy(t, y), [x])


def test_sigmoid_bce_matches_n_by_1_against_n() -> None:
    x, y = normal(5, 1), (normal(5, seed=3) > 0).astype(np.float64)
    a = ops.sigmoid_binary_crossentropy(Tensor(x), y).item()  # (N, 1) logits, (N,) targets
    b = ops.sigmoid_binary_crossentropy(Tensor(x[:, 0]), y[:, None]).item()
    c = ops.sigmoid_binary_crossentropy(Tensor(x), y[:, None]).item()
    assert a == pytest.approx(b, abs=1e-14) == pytest.approx(c, abs=1e-14)
    with pytest.raises(DataError, match="shape"):
        ops.sigmoid_binary_crossentropy(Tensor(x), np.ones(4))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_bce_extreme_logits(dtype) -> None:
    x = np.array([1e4, -1e4, 1e4, -1e4, 0.0], dtype)
    y = np.array([1.0, 0.0, 0.0, 1.0, 1.0])
    t = Tensor(x, requires_grad=True)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss = ops.sigmoid_binary_crossentropy(t, y)
        loss.backward()
    assert loss.item() == pytest.approx((0 + 0 + 1e4 + 1e4 + math.log(2)) / 5, rel=1e-6)
    np.testing.assert_allclose(t.grad, np.array([0, 0, 1, -1, -0.5]) / 5, atol=1e-7)
    assert loss.dtype == dtype and t.grad.dtype == dtype


# -- cross-entropies from probabilities --------------------------------------------------------
def test_categorical_crossentropy_forward_and_gradient() -> None:
    p = np.random.default_rng(0).uniform(0.05, 1.0, (5, 4))  # unnormalised on purpose
    y = labels(5, 4)
    check_forward(lambda a: ops.categorical_crossentropy(a, onehot(y, 4)),
                  lambda a: keras_cce(a, onehot(y, 4)), [p], atol=1e-12)  # fmt: skip
    check_grad(lambda a: ops.categorical_crossentropy(a, y), [p])
    check_grad(lambda a: ops.categorical_crossentropy(a, onehot(y, 4)), [p])


def test_categorical_crossentropy_int_labels_and_renormalisation() -> None:
    x, y = normal(6, 3), labels(6, 3)
    p = np.exp(log_softmax(x))
    a = ops.categorical_crossentropy(Tensor(p), y).item()
    cce = ops.categorical_crossentropy
    assert a == pytest.approx(cce(Tensor(p), onehot(y, 3)).item(), abs=1e-14)
    assert a == pytest.approx(cce(Tensor(3 * p), y).item(), abs=1e-12)
    assert a == pytest.approx(ops.softmax_cross_entropy(Tensor(x), y).item(), abs=1e-12)


def test_categorical_crossentropy_clips_zero_probabilities() -> None:
    p = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
    t = Tensor(p, requires_grad=True)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss = ops.categorical_crossentropy(t, np.array([1, 1]))
        loss.backward()
    assert loss.item() == pytest.approx(-math.log(1e-7) / 2, rel=1e-5)
    assert loss.dtype == np.float32 and np.all(np.isfinite(t.grad))


def test_binary_crossentropy_forward_and_gradient() -> None:
    rng = np.random.default_rng(0)
    p, y = rng.uniform(0.05, 0.95, (6, 2)), rng.random((6, 2))
    check_forward(lambda a: ops.binary_crossentropy(a, y), lambda a: keras_bce(a, y), [p], 1e-12)
    check_grad(lambda a: ops.binary_crossentropy(a, y), [p])
    x = normal(6, 2)
    got = ops.binary_crossentropy(Tensor(sigmoid(x)), y).item()
    assert got == pytest.approx(ops.sigmoid_binary_crossentropy(Tensor(x), y).item(), abs=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_crossentropy_clips_saturated_probabilities(dtype) -> None:
    p = Tensor(np.array([[0.0], [1.0], [1.0], [0.5]], dtype), requires_grad=True)
    y = np.array([1.0, 0.0, 1.0, 1.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss = ops.binary_crossentropy(p, y)
        loss.backward()
    # clipped in the input's dtype as Keras does: 1 - 1e-7 is 1 - 2**-23 in float32
    assert loss.item() == pytest.approx(keras_bce(p.data.ravel(), y.astype(dtype)), rel=1e-5)
    assert loss.dtype == dtype and p.grad.dtype == dtype and np.all(np.isfinite(p.grad))


# -- regression --------------------------------------------------------------------------------
def _huber_ref(e: np.ndarray, d: float) -> float:
    a = np.abs(e)
    return float(np.mean(np.where(a <= d, 0.5 * e**2, d * a - 0.5 * d**2)))


REGRESSION = [
    ("mse", ops.mean_squared_error, lambda e: np.mean(e**2)),
    ("mae", ops.mean_absolute_error, lambda e: np.mean(np.abs(e))),
    ("huber", ops.huber, lambda e: _huber_ref(e, 1.0)),
    ("huber_0.5", lambda p, y: ops.huber(p, y, delta=0.5), lambda e: _huber_ref(e, 0.5)),
    ("huber_3", lambda p, y: ops.huber(p, y, delta=3.0), lambda e: _huber_ref(e, 3.0)),
]


def _error_off_kinks(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Targets and predictions whose errors stay clear of 0 and of the huber deltas."""
    rng = np.random.default_rng(0)
    e = rng.choice([-1, 1], shape) * rng.choice([0.25, 0.75, 1.6, 2.5, 4.0], shape)
    y = rng.standard_normal(shape)
    return y + e, y


@pytest.mark.parametrize("shape", [(6, 1), (5,), (4, 3), (1, 2)], ids=str)
@pytest.mark.parametrize("name, fn, ref", REGRESSION, ids=[r[0] for r in REGRESSION])
def test_regression_forward_and_gradient(name, fn, ref, shape) -> None:
    p, y = _error_off_kinks(shape)
    check_forward(lambda a: fn(a, y), lambda a: ref(a - y), [p], atol=1e-12)
    check_grad(lambda a: fn(a, y), [p])


@pytest.mark.parametrize("name, fn, ref", REGRESSION, ids=[r[0] for r in REGRESSION])
def test_regression_matches_n_by_1_against_n_and_keeps_float32(name, fn, ref) -> None:
    p, y = _error_off_kinks((5, 1))
    t = Tensor(p.astype(np.float32), requires_grad=True)
    loss = fn(t, y[:, 0])  # (N, 1) predictions, (N,) targets: matched, not broadcast to (N, N)
    loss.backward()
    assert loss.item() == pytest.approx(ref(p - y), rel=1e-5)
    assert loss.dtype == np.float32 and t.grad.dtype == np.float32 and t.grad.shape == (5, 1)
    with pytest.raises(DataError, match="shape"):
        fn(t, np.zeros((5, 2)))


def test_huber_is_half_mse_for_small_errors_and_linear_beyond() -> None:
    y = normal(4, 3)
    small = Tensor(y + 0.1)
    half_mse = 0.5 * ops.mean_squared_error(small, y).item()
    assert ops.huber(small, y).item() == pytest.approx(half_mse)
    big = Tensor(y + 10.0, requires_grad=True)
    loss = ops.huber(big, y, delta=2.0)
    loss.backward()
    assert loss.item() == pytest.approx(2.0 * 10.0 - 0.5 * 4.0)
    np.testing.assert_allclose(big.grad, np.full((4, 3), 2.0 / 12))


def test_regression_targets_never_get_a_gradient() -> None:
    p = Tensor(normal(3, 2), requires_grad=True)
    y = Tensor(normal(3, 2, seed=4), requires_grad=True)
    ops.mean_squared_error(p, y).backward()
    np.testing.assert_allclose(p.grad, 2 * (p.data - y.data) / 6)
    assert y.grad is None
