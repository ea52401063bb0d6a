"""Activations: forward vs numpy, gradients vs central differences, extreme inputs, dtypes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dlcli.core import ops
from dlcli.core.gradcheck import check_forward, check_grad
from dlcli.core.ops.activations import ACTIVATIONS, erf, get_activation
from dlcli.core.tensor import Tensor

_erf = np.vectorize(math.erf)
ALPHA, SCALE = 1.6732632423543772, 1.0507009873554805  # Keras selu constants


def away(*shape: int, seed: int = 0) -> np.ndarray:
    """Normal samples kept 0.1 away from 0, where relu-like activations have a kink."""
    x = np.random.default_rng(seed).standard_normal(shape) * 2
    return np.where(x >= 0, x + 0.1, x - 0.1)


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# id, activation on Tensors, numpy reference
CASES = [
    ("relu", ops.relu, lambda x: np.maximum(x, 0)),
    ("leaky_relu", ops.leaky_relu, lambda x: np.where(x > 0, x, 0.2 * x)),
    ("leaky_relu_0.01", lambda x: ops.leaky_relu(x, 0.01), lambda x: np.where(x > 0, x, 0.01 * x)),
    ("elu", ops.elu, lambda x: np.where(x > 0, x, np.exp(x) - 1)),
    ("elu_0.5", lambda x: ops.elu(x, alpha=0.5), lambda x: np.where(x > 0, x, 0.5 * np.expm1(x))),
    ("selu", ops.selu, lambda x: SCALE * np.where(x > 0, x, ALPHA * (np.exp(x) - 1))),
    ("gelu", ops.gelu, lambda x: 0.5 * x * (1 + _erf(x / np.sqrt(2)))),
    ("gelu_tanh", lambda x: ops.gelu(x, approximate=True),
     lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))),
    ("sigmoid", ops.sigmoid, lambda x: 1 / (1 + np.exp(-x))),
    ("tanh", ops.tanh, np.tanh),
    ("softplus", ops.softplus, lambda x: np.log1p(np.exp(x))),
    ("softmax", ops.softmax, _softmax),
    ("softmax_axis0", lambda x: ops.softmax(x, axis=0), lambda x: _softmax(x, axis=0)),
    ("log_softmax", ops.log_softmax, lambda x: np.log(_softmax(x))),
    ("log_softmax_axis0", lambda x: ops.log_softmax(x, 0), lambda x: np.log(_softmax(x, axis=0))),
    ("linear", ops.linear, lambda x: x),
    ("silu", ops.silu, lambda x: x / (1 + np.exp(-x))),
    ("mish", ops.mish, lambda x: x * np.tanh(np.log1p(np.exp(x)))),
    ("relu6", ops.relu6, lambda x: np.minimum(np.maximum(x, 0), 6)),
    ("relu6_top", lambda x: ops.relu6(x * 4.0), lambda x: np.minimum(np.maximum(4 * x, 0), 6)),
    ("hard_sigmoid", ops.hard_sigmoid, lambda x: np.clip(x / 6 + 0.5, 0, 1)),
    ("hard_sigmoid_wide", lambda x: ops.hard_sigmoid(x * 3.0),
     lambda x: np.clip(x / 2 + 0.5, 0, 1)),
    ("hard_silu", ops.hard_silu, lambda x: x * np.minimum(np.maximum(x + 3, 0), 6) / 6),
    ("hard_silu_wide", lambda x: ops.hard_silu(x * 3.0),
     lambda x: 3 * x * np.minimum(np.maximum(3 * x + 3, 0), 6) / 6),
    ("softsign", ops.softsign, lambda x: x / (np.abs(x) + 1)),
    ("log_sigmoid", ops.log_sigmoid, lambda x: -np.log1p(np.exp(-x))),
    ("celu", ops.celu, lambda x: np.maximum(x, 0) + np.minimum(0, np.expm1(x))),
    ("celu_2", lambda x: ops.celu(x, alpha=2.0),
     lambda x: np.maximum(x, 0) + np.minimum(0, 2 * np.expm1(x / 2))),
]  # fmt: skip
IDS = [c[0] for c in CASES]
SHAPES = [(4, 5), (1, 3), (2, 3, 4), (7,)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name, fn, ref", CASES, ids=IDS)
def test_forward_matches_numpy(name, fn, ref, shape) -> None:
    check_forward(fn, ref, [away(*shape)], atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name, fn, ref", CASES, ids=IDS)
def test_gradient_matches_central_differences(name, fn, ref, shape) -> None:
    check_grad(fn, [away(*shape)])


def test_softmax_on_a_middle_axis() -> None:
    x = away(2, 3, 4)
    check_forward(lambda t: ops.softmax(t, axis=1), lambda a: _softmax(a, axis=1), [x])
    check_grad(lambda t: ops.softmax(t, axis=1), [x])
    check_grad(lambda t: ops.log_softmax(t, axis=-2), [x])


@pytest.mark.parametrize("name, fn, ref", CASES, ids=IDS)
def test_float32_in_float32_out(name, fn, ref) -> None:
    x = Tensor(away(3, 4).astype(np.float32), requires_grad=True)
    y = fn(x)
    assert y.dtype == np.float32
    (y * 2.0).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(y.data, ref(x.data.astype(np.float64)), rtol=2e-6, atol=2e-6)


def test_exponential() -> None:  # apart: exp(1e4) overflows, in Keras as here
    x = away(3, 4)
    check_forward(ops.exponential, np.exp, [x], atol=1e-12, rtol=1e-12)
    check_grad(ops.exponential, [x])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, fn, ref", CASES, ids=IDS)
def test_extreme_inputs_stay_finite(name, fn, ref, dtype) -> None:
    x = np.array([[1e4, -1e4, 0.0, 50.0], [-1e4, -1e4, 1e4, -50.0]], dtype)
    x = Tensor(x, requires_grad=True)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = fn(x)
        (y * 1.0).sum().backward()
    assert np.all(np.isfinite(y.data)) and np.all(np.isfinite(x.grad))


@pytest.mark.parametrize("name, fn, want", [
    ("relu", ops.relu, [1e4, 0, 0]),
    ("sigmoid", ops.sigmoid, [1, 0, 0.5]),
    ("tanh", ops.tanh, [1, -1, 0]),
    ("softplus", ops.softplus, [1e4, 0, math.log(2)]),
    ("elu", ops.elu, [1e4, -1, 0]),
    ("selu", ops.selu, [SCALE * 1e4, -SCALE * ALPHA, 0]),
    ("gelu", ops.gelu, [1e4, 0, 0]),
    ("gelu_tanh", lambda x: ops.gelu(x, approximate=True), [1e4, 0, 0]),
    ("softmax", ops.softmax, [1, 0, 0]),
    ("log_softmax", ops.log_softmax, [0, -2e4, -1e4]),
])  # fmt: skip
def test_values_at_extremes(name, fn, want) -> None:
    y = fn(Tensor(np.array([1e4, -1e4, 0.0])))
    np.testing.assert_allclose(y.data, want, atol=1e-12)


def test_known_values() -> None:
    one = Tensor(np.array([1.0, -1.0]))
    close = np.testing.assert_allclose
    close(ops.gelu(one).data, [0.8413447460685429, -0.15865525393145707], rtol=1e-14)
    tanh_form = ops.gelu(one, approximate=True).data
    close(tanh_form, [0.8411919906082768, -0.15880800939172324], rtol=1e-12)
    close(ops.selu(one).data, [1.0507009873554805, -1.1113307378125628], rtol=1e-14)


def test_sigmoid_gradient_at_extremes() -> None:
    x = Tensor(np.array([1e4, -1e4, 0.0]), requires_grad=True)
    ops.sigmoid(x).sum().backward()
    np.testing.assert_allclose(x.grad, [0, 0, 0.25])


def test_erf_matches_math_erf() -> None:
    x = np.concatenate([np.linspace(-6, 6, 2401), [1.0, -1.0, 1 + 1e-12, 8.0, 30.0, 1e-300]])
    np.testing.assert_allclose(erf(x), _erf(x), rtol=5e-16, atol=1e-300)
    assert erf(np.array([np.inf, -np.inf, 0.0])).tolist() == [1.0, -1.0, 0.0]
    x32 = np.linspace(-5, 5, 101, dtype=np.float32)
    assert erf(x32).dtype == np.float32
    np.testing.assert_allclose(erf(x32), _erf(x32.astype(np.float64)), atol=3e-7)


def test_softmax_rows_sum_to_one() -> None:
    y = ops.softmax(Tensor(away(6, 10).astype(np.float32) * 30))
    np.testing.assert_allclose(y.data.sum(axis=-1), np.ones(6), rtol=1e-6)


def test_linear_is_the_identity() -> None:
    x = Tensor(away(3), requires_grad=True)
    assert ops.linear(x) is x


def test_activation_registry() -> None:
    assert set(ACTIVATIONS) == {
        "linear", "relu", "leaky_relu", "elu", "selu", "gelu", "sigmoid", "tanh", "softplus",
        "softmax", "log_softmax", "silu", "swish", "mish", "relu6", "hard_sigmoid", "hard_silu",
        "hard_swish", "softsign", "exponential", "log_sigmoid", "celu",
    }  # fmt: skip
    assert ACTIVATIONS["swish"] is ops.silu and ACTIVATIONS["hard_swish"] is ops.hard_silu
    assert get_activation(None) is ops.linear
    for name, fn in ACTIVATIONS.items():
        assert get_activation(name) is fn
        assert fn(Tensor(away(2, 3))).shape == (2, 3)


def test_unknown_activation_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match=r"activation 'rleu'.*'relu'.*leaky_relu.*log_softmax"):
        get_activation("rleu")
    with pytest.raises(ValueError, match="did you mean 'relu'"):
        get_activation("ReLU")  # names are Keras's lower-case ones
    with pytest.raises(ValueError, match="valid names"):
        get_activation("swishh")
