"""Intra-op threads: the same results as one thread, bit-identical run to run, BLAS restored."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import threadpoolctl

from dlcli.core import get_num_threads, parallel, set_num_threads
from dlcli.core.gradcheck import check_grad
from dlcli.core.ops.activations import relu
from dlcli.core.ops.conv import conv2d
from dlcli.core.ops.norm import batch_norm
from dlcli.core.ops.pool import max_pool2d
from dlcli.core.ops.shape import matmul
from dlcli.core.tensor import Tensor


@pytest.fixture
def split_everything(monkeypatch):
    """Let even tiny arrays and GEMMs be split, and leave one thread (BLAS restored) behind."""
    monkeypatch.setattr(parallel, "MIN_ELEMENTS", 1)
    monkeypatch.setattr(parallel, "MIN_MACS", 1)
    monkeypatch.setattr(parallel, "_QUIET_GEMMS", 10**9)  # never hand GEMMs to BLAS's threads
    yield
    set_num_threads(1)


def _conv(x, W, b):
    return conv2d(x, W, b, padding="same")


def _conv_strided(x, W, b):
    return conv2d(x, W, b, strides=2, padding=((0, 1), (2, 0)))


def _bn_train(x, gamma, beta):
    c = x.shape[-1]
    return batch_norm(x, gamma, beta, np.zeros(c, x.dtype), np.ones(c, x.dtype), training=True)


def _bn_eval(x, gamma, beta):
    c = x.shape[-1]
    mean = np.linspace(-0.5, 0.5, c).astype(x.dtype)
    var = np.linspace(0.5, 2.0, c).astype(x.dtype)
    return batch_norm(x, gamma, beta, mean, var, training=False)


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _case(name):
    """(fn, float32 inputs) for each op; odd batch sizes so the chunks differ in length."""
    rng = np.random.default_rng(0)
    cases = {
        "conv2d": (_conv, [_rand(rng, 5, 9, 8, 6), _rand(rng, 3, 3, 6, 7), _rand(rng, 7)]),
        "conv2d_strided": (_conv_strided,
                           [_rand(rng, 3, 9, 8, 5), _rand(rng, 2, 3, 5, 4), _rand(rng, 4)]),
        "conv2d_grey": (_conv, [_rand(rng, 5, 7, 7, 1), _rand(rng, 3, 3, 1, 4), _rand(rng, 4)]),
        "max_pool2d": (lambda x: max_pool2d(x, 2), [_rand(rng, 5, 8, 6, 3)]),
        "max_pool2d_overlap": (lambda x: max_pool2d(x, 3, 2, "same"), [_rand(rng, 3, 7, 8, 3)]),
        "batch_norm": (_bn_train, [_rand(rng, 5, 4, 3, 6), _rand(rng, 6), _rand(rng, 6)]),
        "batch_norm_2d": (_bn_train, [_rand(rng, 7, 6), _rand(rng, 6), _rand(rng, 6)]),
        "batch_norm_eval": (_bn_eval, [_rand(rng, 5, 4, 3, 6), _rand(rng, 6), _rand(rng, 6)]),
        "relu": (relu, [_rand(rng, 7, 5, 3)]),
        "matmul": (matmul, [_rand(rng, 9, 20), _rand(rng, 20, 11)]),
    }  # fmt: skip
    return cases[name]


CASES = ["conv2d", "conv2d_strided", "conv2d_grey", "max_pool2d", "max_pool2d_overlap",
         "batch_norm", "batch_norm_2d", "batch_norm_eval", "relu", "matmul"]  # fmt: skip


def _run(threads, fn, arrays):
    """Output and the gradient of every input of sum(fn(...) * fixed weights)."""
    set_num_threads(threads)
    tensors = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    y = fn(*tensors)
    weights = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
    (y * Tensor(weights)).sum().backward()
    return [y.data.copy()] + [t.grad for t in tensors]


@pytest.mark.parametrize("name", CASES)
def test_two_threads_match_one_and_repeat_exactly(name, split_everything):
    fn, arrays = _case(name)
    one = _run(1, fn, arrays)
    two = _run(2, fn, arrays)
    again = _run(2, fn, arrays)
    for a, b, c in zip(one, two, again, strict=True):
        # float32 sums in another order: relative to the array's scale, not each element's
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * np.abs(a).max())
        np.testing.assert_array_equal(b, c)  # bit-identical: fixed chunks, fixed order of sums


def test_gradcheck_conv2d_two_threads(split_everything):
    set_num_threads(2)
    rng = np.random.default_rng(2)
    check_grad(_conv_strided, [rng.standard_normal(s) for s in ((3, 6, 5, 3), (2, 3, 3, 2), (2,))])
    check_grad(_conv, [rng.standard_normal(s) for s in ((3, 5, 4, 3), (3, 3, 3, 2), (2,))])


def test_gradcheck_batch_norm_two_threads(split_everything):
    set_num_threads(2)
    rng = np.random.default_rng(3)
    check_grad(_bn_train, [rng.standard_normal(s) for s in ((5, 3, 2, 4), (4,), (4,))])


def test_chunks_run_on_several_threads(split_everything):
    set_num_threads(2)
    seen = parallel.rowwise(lambda rows: (threading.get_ident(), rows.tolist()), np.arange(5))
    assert [rows for _, rows in seen] == [[0, 1, 2], [3, 4]]
    assert len({ident for ident, _ in seen}) == 2


def test_row_chunks_cover_the_rows_in_order():
    assert parallel.row_chunks(7, 3) == [slice(0, 3), slice(3, 5), slice(5, 7)]
    assert parallel.row_chunks(2, 2) == [slice(0, 1), slice(1, 2)]


def test_exception_in_a_worker_chunk_propagates(split_everything):
    set_num_threads(2)

    def fail_on_second_chunk(rows):
        if rows[0] != 0:
            raise RuntimeError("chunk failed")

    with pytest.raises(RuntimeError, match="chunk failed"):
        parallel.rowwise(fail_on_second_chunk, np.arange(6))


def test_one_thread_restores_blas_limits(split_everything):

    def blas_threads():
        pools = threadpoolctl.threadpool_info()
        return [p["num_threads"] for p in pools if p["user_api"] == "blas"]

    before = blas_threads()
    set_num_threads(2)
    assert get_num_threads() == 2
    assert all(n == 1 for n in blas_threads())
    set_num_threads(1)
    assert get_num_threads() == 1
    assert blas_threads() == before


def blas_counts() -> set[int]:
    pools = threadpoolctl.threadpool_info()
    return {p["num_threads"] for p in pools if p["user_api"] == "blas"}


def test_gemms_go_to_blas_threads_when_nothing_else_is_split(monkeypatch):
    monkeypatch.setattr(parallel, "_gemms_since_split", parallel._QUIET_GEMMS)
    rng = np.random.default_rng(4)
    a, b = _rand(rng, 64, 96), _rand(rng, 96, 80)  # big enough for BLAS, too small to split
    try:
        set_num_threads(2)
        np.testing.assert_allclose(parallel.pmatmul(a, b), a @ b, rtol=1e-5, atol=1e-4)
        # BLAS keeps its own threads for the GEMMs that follow, until a split pass
        assert blas_counts() == {min(2, parallel._blas_threads)}
        parallel.rowwise(lambda rows: None, np.zeros((4, parallel.MIN_ELEMENTS)))
        assert blas_counts() == {1}
    finally:
        set_num_threads(1)


def test_thread_count_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        set_num_threads(0)


def test_rowwise_sums_adds_each_partial_in_chunk_order(split_everything):
    set_num_threads(3)
    a = np.random.default_rng(5).standard_normal((7, 4)).astype(np.float32)
    total, squares = parallel.rowwise_sums(lambda r: (r.sum(axis=0), (r * r).sum(axis=0)), a)
    chunks = parallel.row_chunks(7, 3)
    want = a[chunks[0]].sum(axis=0) + a[chunks[1]].sum(axis=0) + a[chunks[2]].sum(axis=0)
    np.testing.assert_array_equal(total, want)
    np.testing.assert_array_equal(squares, parallel.rowwise_sum(lambda r: (r * r).sum(axis=0), a))
