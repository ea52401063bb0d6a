"""The engine: accumulation, broadcasting, no_grad/detach, graph release, deep graphs, gradcheck."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

from dlcli.core import ops
from dlcli.core.gradcheck import check_forward, check_grad
from dlcli.core.ops.elementwise import Mul
from dlcli.core.tensor import Function, Tensor, is_grad_enabled, no_grad


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def test_node_used_twice_accumulates() -> None:
    x = rand(3, 2)
    a = Tensor(x, requires_grad=True)
    (a * a + a).sum().backward()
    np.testing.assert_allclose(a.grad, 2 * x + 1)
    check_grad(lambda a: a * a + a, [x])


def test_node_reused_across_branches() -> None:
    # b feeds three consumers at different depths; its gradient must be summed before it flows on
    check_grad(lambda a: (lambda b: b * b + ops.exp(b) - b / 3.0)(a * 2.0 + 1.0), [rand(4)])


def test_leaf_gradient_accumulates_across_backward_calls() -> None:
    x = rand(2, 3)
    a = Tensor(x, requires_grad=True)
    (a * 3.0).sum().backward()
    (a * a).sum().backward()
    np.testing.assert_allclose(a.grad, 3.0 + 2 * x)
    a.zero_grad()
    assert a.grad is None


@pytest.mark.parametrize("shape_a, shape_b", [
    ((3, 1), (1, 4)),
    ((4,), (2, 3, 4)),
    ((), (2, 3)),
    ((2, 3), ()),
    ((1, 3, 1), (5, 1, 2)),
    ((1,), (1,)),
])  # fmt: skip
@pytest.mark.parametrize("op", [ops.add, ops.sub, ops.mul, ops.div])
def test_broadcast_gradients_are_summed_back(shape_a, shape_b, op) -> None:
    a, b = rand(*shape_a, seed=1), rand(*shape_b, seed=2) + 3.0  # b away from 0 for div
    check_grad(op, [a, b])
    ta, tb = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    op(ta, tb).sum().backward()
    assert ta.grad.shape == shape_a and tb.grad.shape == shape_b


def test_broadcast_gradient_values() -> None:
    a = Tensor(np.zeros((3, 1)), requires_grad=True)
    b = Tensor(np.zeros((1, 4)), requires_grad=True)
    (a + b).sum().backward()
    np.testing.assert_array_equal(a.grad, np.full((3, 1), 4.0))
    np.testing.assert_array_equal(b.grad, np.full((1, 4), 3.0))


def test_python_scalars_and_constants() -> None:
    x = rand(3)
    check_grad(lambda a: 2.0 * a - 1.0 + 3.0 / (a * a + 1.0) - a / 2.0, [x])
    a = Tensor(x.astype(np.float32))
    assert (2.0 * a + np.float64(1.0)).dtype == np.float32  # constants take the tensor's dtype


def test_no_grad_records_nothing() -> None:
    a = Tensor(rand(3), requires_grad=True)
    with no_grad():
        assert not is_grad_enabled()
        y = ops.exp(a * 2.0).sum()
    assert is_grad_enabled()
    assert not y.requires_grad and y._op is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_no_grad_restores_state_after_an_exception() -> None:
    with pytest.raises(KeyError), no_grad():
        raise KeyError("boom")
    assert is_grad_enabled()


def test_detach_cuts_the_graph() -> None:
    x = rand(4)
    a = Tensor(x, requires_grad=True)
    d = (a * 2.0).detach()
    assert not d.requires_grad and d._op is None
    (d * a).sum().backward()
    np.testing.assert_allclose(a.grad, 2.0 * x)  # no contribution through d


def test_constant_inputs_get_no_gradient() -> None:
    a = Tensor(rand(3), requires_grad=True)
    c = Tensor(rand(3, seed=5))
    (a * c).sum().backward()
    assert c.grad is None and a.grad is not None


def test_graph_is_released_after_backward() -> None:
    a = Tensor(rand(5), requires_grad=True)
    b = a * 2.0
    loss = (b * b).sum()
    ref = weakref.ref(b)
    op = loss._op
    del b
    gc.collect()
    assert ref() is not None  # still held by the graph before backward
    loss.backward()
    assert loss._op is None and op.inputs == ()
    gc.collect()
    assert ref() is None  # the intermediate died with the graph


def test_deep_chain_backward_is_iterative() -> None:
    a = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = a
    for _ in range(10_000):
        y = y + 1.0
    y = y * 3.0
    y.sum().backward()
    np.testing.assert_allclose(a.grad, [3.0, 3.0])
    np.testing.assert_allclose(y.data, (a.data + 10_000) * 3)


def test_backward_needs_a_scalar() -> None:
    a = Tensor(rand(2, 2), requires_grad=True)
    with pytest.raises(RuntimeError, match="one element"):
        (a * 2.0).backward()
    y = a * 2.0
    y.backward(np.ones((2, 2)))  # an explicit seed gradient is fine
    np.testing.assert_allclose(a.grad, np.full((2, 2), 2.0))


def test_backward_on_a_leaf() -> None:
    a = Tensor(np.array(3.0), requires_grad=True)
    a.backward()
    assert float(a.grad) == 1.0


def test_float32_stays_float32_through_forward_and_backward() -> None:
    a = Tensor(rand(3, 4).astype(np.float32), requires_grad=True)
    y = ((a * a + 1.0).sqrt().log() / 2.0 - ops.exp(-a)).max(axis=1).mean()
    assert y.dtype == np.float32
    y.backward()
    assert a.grad.dtype == np.float32


class WrongMul(Mul):
    """a * b with a deliberately wrong gradient for a."""

    def backward(self, gy):
        return gy * self.b * 1.01, gy * self.a


class WrongShape(Function):
    """Identity whose backward returns a transposed gradient."""

    def forward(self, x):
        return x.copy()

    def backward(self, gy):
        return gy.T.copy()


def test_check_grad_bites_on_a_wrong_backward() -> None:
    a, b = rand(3, 2), rand(3, 2, seed=1)
    check_grad(lambda a, b: Mul.apply(a, b), [a, b])
    with pytest.raises(AssertionError, match="gradient of input 0"):
        check_grad(lambda a, b: WrongMul.apply(a, b), [a, b])
    check_grad(lambda a, b: WrongMul.apply(a, b), [a, b], wrt=[1])  # b's gradient is right


def test_check_forward_bites_on_a_wrong_forward() -> None:
    x = rand(3)
    check_forward(lambda a: a * 2.0, lambda a: a * 2.0, [x])
    with pytest.raises(AssertionError):
        check_forward(lambda a: a * 2.0, lambda a: a * 2.0001, [x])


def test_a_misshapen_gradient_names_the_op() -> None:
    a = Tensor(rand(3, 4), requires_grad=True)
    with pytest.raises(ValueError, match=r"WrongShape\.backward.*\(4, 3\).*\(3, 4\)"):
        WrongShape.apply(a).sum().backward()


def test_tensor_basics() -> None:
    t = Tensor([[1, 2, 3]])
    assert t.dtype == np.float32 and t.shape == (1, 3) and t.size == 3 and t.ndim == 2
    assert Tensor(np.arange(3)).dtype.kind == "i"  # integer arrays (labels) stay integer
    assert Tensor(2.5).item() == 2.5
    with pytest.raises(RuntimeError, match="one element"):
        t.item()
    assert isinstance(t.numpy(), np.ndarray)
    assert "requires_grad=True" in repr(Tensor([1.0], requires_grad=True))
