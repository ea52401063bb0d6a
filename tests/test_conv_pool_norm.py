"""conv2d, pooling, batch_norm and dropout against loop references and central differences."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dlcli.core.gradcheck import check_forward, check_grad
from dlcli.core.ops.activations import relu
from dlcli.core.ops.conv import conv2d, conv_output_size, normalize_padding, resolve_padding
from dlcli.core.ops.norm import batch_norm, dropout
from dlcli.core.ops.pool import avg_pool2d, global_avg_pool2d, max_pool2d
from dlcli.core.tensor import Tensor
from dlcli.nn.layers import Conv2D, MaxPool2D

STRIDES = [1, 2, (1, 2)]
PADDINGS = ["valid", "same", 1, ((0, 1), (2, 0))]
KERNELS = [1, 3, (2, 3)]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _explicit_pads(padding, hw, kernel, strides):
    """Padding computed independently of resolve_padding, straight from the TF formula."""
    (kh, kw), (sh, sw) = _pair(kernel), _pair(strides)
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        out = []
        for n, k, s in ((hw[0], kh, sh), (hw[1], kw, sw)):
            total = max((int(np.ceil(n / s)) - 1) * s + k - n, 0)
            out.append((total // 2, total - total // 2))
        return tuple(out)
    if isinstance(padding, int):
        return (padding, padding), (padding, padding)
    return tuple(tuple(p) for p in padding)


def conv_reference(x, W, b, strides, padding):
    """Direct loops: one output pixel at a time, one window dot product each."""
    (sh, sw), (kh, kw) = _pair(strides), W.shape[:2]
    (t, bo), (l, r) = _explicit_pads(padding, x.shape[1:3], (kh, kw), (sh, sw))
    xpad = np.pad(x, ((0, 0), (t, bo), (l, r), (0, 0)))
    ho = (xpad.shape[1] - kh) // sh + 1
    wo = (xpad.shape[2] - kw) // sw + 1
    y = np.zeros((x.shape[0], ho, wo, W.shape[3]))
    for n in range(x.shape[0]):
        for i in range(ho):
            for j in range(wo):
                window = xpad[n, i * sh : i * sh + kh, j * sw : j * sw + kw, :]
                for o in range(W.shape[3]):
                    y[n, i, j, o] = np.sum(window * W[..., o]) + (0.0 if b is None else b[o])
    return y


def pool_reference(x, pool, strides, padding, kind):
    """Loops over output cells; only real (unpadded) cells take part in a window."""
    (ph, pw) = _pair(pool)
    (sh, sw) = _pair(strides if strides is not None else pool)
    (t, _), (l, _) = _explicit_pads(padding, x.shape[1:3], (ph, pw), (sh, sw))
    h, w = x.shape[1:3]
    if padding == "same":
        ho, wo = -(-h // sh), -(-w // sw)
    else:
        ho, wo = (h - ph) // sh + 1, (w - pw) // sw + 1
    y = np.zeros((x.shape[0], ho, wo, x.shape[3]))
    for i in range(ho):
        for j in range(wo):
            r0, c0 = i * sh - t, j * sw - l
            window = x[:, max(r0, 0) : r0 + ph, max(c0, 0) : c0 + pw, :]
            y[:, i, j] = window.max(axis=(1, 2)) if kind == "max" else window.mean(axis=(1, 2))
    return y


def distinct(shape, seed=0):
    """Values without ties, 0.1 apart, so max-pool gradients are well defined."""
    rng = np.random.default_rng(seed)
    return rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 - 1.0


# -- conv2d -------------------------------------------------------------------------------


def test_resolve_padding_rules():
    assert resolve_padding("valid", (5, 5), 3, 1) == ((0, 0), (0, 0))
    assert resolve_padding("same", (28, 28), 3, 1) == ((1, 1), (1, 1))
    assert resolve_padding("same", (6, 7), 3, 2) == ((0, 1), (1, 1))  # extra pad bottom/right
    assert resolve_padding("SAME", (5, 5), 1, 2) == ((0, 0), (0, 0))
    assert resolve_padding(2, (5, 5), 3, 1) == ((2, 2), (2, 2))
    assert resolve_padding((1, 0), (5, 5), 3, 1) == ((1, 1), (0, 0))
    assert resolve_padding(((0, 1), (2, 0)), (5, 5), 3, 1) == ((0, 1), (2, 0))
    assert conv_output_size(7, 3, 2, (1, 1)) == 4
    assert resolve_padding(np.int64(1), (5, 5), 3, 1) == ((1, 1), (1, 1))
    assert resolve_padding([1, [0, 2]], (5, 5), 3, 1) == ((1, 1), (0, 2))  # YAML lists
    for bad in ("full", -1, (1, 2, 3), True, (1.5, 1), ((0, -1), (0, 0))):
        with pytest.raises(ValueError):
            resolve_padding(bad, (5, 5), 3, 1)
    for bad in (0, (1, 0), True, 1.5):
        with pytest.raises(ValueError):
            resolve_padding("valid", (5, 5), 3, bad)


@pytest.mark.parametrize("strides,padding", [(1, "valid"), (2, "same"), ((1, 2), 1),
                                             (2, ((0, 1), (2, 0)))])  # fmt: skip
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("cin", [1, 3, 4])
def test_conv2d_forward(kernel, strides, padding, cin):
    rng = np.random.default_rng(1)
    kh, kw = _pair(kernel)
    x = rng.standard_normal((2, 7, 6, cin))
    W, b = rng.standard_normal((kh, kw, cin, 4)), rng.standard_normal(4)
    check_forward(lambda x, W, b: conv2d(x, W, b, strides=strides, padding=padding),
                  lambda x, W, b: conv_reference(x, W, b, strides, padding), [x, W, b])  # fmt: skip


@pytest.mark.parametrize("cin", [2, 6])
def test_conv2d_forward_float32_and_no_bias(cin):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 5, 5, cin)).astype(np.float32)
    W = rng.standard_normal((3, 3, cin, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    y = conv2d(Tensor(x), Tensor(W), padding="same")
    assert y.dtype == np.float32  # never upcast
    np.testing.assert_allclose(y.data, conv_reference(x, W, None, 1, "same"), atol=1e-5)
    y = conv2d(Tensor(x), Tensor(W), Tensor(b), padding="same")
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.data, conv_reference(x, W, b, 1, "same"), atol=1e-5)


def test_conv2d_1x1_stride_1_is_a_matmul():
    rng = np.random.default_rng(6)
    x, W = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((1, 1, 5, 2))
    check_forward(lambda x, W: conv2d(x, W), lambda x, W: x @ W[0, 0], [x, W])
    check_grad(lambda x, W: conv2d(x, W), [x, W])


@pytest.mark.parametrize(
    "strides,padding,kernel", list(itertools.product(STRIDES, PADDINGS, KERNELS))
)
@pytest.mark.parametrize("cin", [2, 5])  # im2col is built channel-major below 4 channels
def test_conv2d_grad(strides, padding, kernel, cin):
    rng = np.random.default_rng(3)
    kh, kw = _pair(kernel)
    x = rng.standard_normal((1, 5, 7, cin))
    W, b = rng.standard_normal((kh, kw, cin, 3)), rng.standard_normal(3)
    check_grad(lambda x, W, b: conv2d(x, W, b, strides=strides, padding=padding), [x, W, b])


@pytest.mark.parametrize("cin", [3, 4])
def test_conv2d_grad_batch_and_no_bias(cin):
    rng = np.random.default_rng(4)
    x, W = rng.standard_normal((2, 4, 5, cin)), rng.standard_normal((3, 2, cin, 2))
    check_grad(lambda x, W: conv2d(x, W, strides=(2, 1), padding="same"), [x, W])


def test_conv2d_grad_when_taps_see_only_padding():
    """Padding wider than the kernel reaches: some taps (here all) never touch the input."""
    rng = np.random.default_rng(16)
    x, W = rng.standard_normal((2, 2, 4, 3)), rng.standard_normal((3, 2, 3, 2))
    check_grad(lambda x, W: conv2d(x, W, strides=(3, 2), padding=((3, 0), (1, 2))), [x, W])


def test_conv2d_bias_grad_when_kernel_is_frozen():
    rng = np.random.default_rng(14)
    x, W, b = rng.standard_normal((2, 4, 4, 4)), rng.standard_normal((3, 3, 4, 2)), np.ones(2)
    check_grad(lambda x, W, b: conv2d(x, W, b, padding="same"), [x, W, b], wrt=[0, 2])


def test_conv2d_skips_input_grad_for_first_layer():
    rng = np.random.default_rng(5)
    x = Tensor(rng.standard_normal((2, 5, 5, 2)))
    W = Tensor(rng.standard_normal((3, 3, 2, 3)), requires_grad=True)
    conv2d(x, W, padding="same").sum().backward()
    assert x.grad is None and W.grad.shape == (3, 3, 2, 3)
    check_grad(lambda W: conv2d(x.data, W, padding="same"), [W.data])


@pytest.mark.parametrize("kernel", [1, 3])
def test_padded_scratch_buffer_shared_by_two_calls(kernel):
    """Two convs and pools of one geometry share a padding buffer; backward must not mind."""
    rng = np.random.default_rng(15)
    a, b = rng.standard_normal((2, 1, 4, 5, 4))
    W = rng.standard_normal((kernel, kernel, 4, 2))

    def fn(a, b, W):
        conv = conv2d(a, W, padding=1) * conv2d(b, W, padding=1)
        pool = max_pool2d(a, 2, 1, "same") + avg_pool2d(b, 2, 1, "same")
        return conv.sum() + pool.sum()

    check_grad(fn, [a, b, W])


def test_conv2d_rejects_channel_mismatch():
    with pytest.raises(ValueError, match="same C"):
        conv2d(Tensor(np.zeros((1, 4, 4, 2))), Tensor(np.zeros((3, 3, 3, 1))))


# -- pooling -------------------------------------------------------------------------------

POOLS = [(2, None, "valid"), (2, None, "same"), (3, 2, "valid"), (3, 2, "same"),
         ((2, 3), 1, "same"), (2, (1, 2), "valid"), (3, 3, "same")]  # fmt: skip


@pytest.mark.parametrize("pool,strides,padding", POOLS)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_forward(kind, pool, strides, padding):
    op = max_pool2d if kind == "max" else avg_pool2d
    x = np.random.default_rng(6).standard_normal((2, 7, 6, 3))
    check_forward(lambda x: op(x, pool, strides, padding),
                  lambda x: pool_reference(x, pool, strides, padding, kind), [x])  # fmt: skip


@pytest.mark.parametrize("pool,strides,padding", POOLS)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_grad(kind, pool, strides, padding):
    op = max_pool2d if kind == "max" else avg_pool2d
    check_grad(lambda x: op(x, pool, strides, padding), [distinct((1, 5, 7, 2))])


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_exact_tiling_fast_path(kind):
    op = max_pool2d if kind == "max" else avg_pool2d
    x = distinct((2, 4, 6, 3), seed=7)
    check_forward(lambda x: op(x, 2), lambda x: pool_reference(x, 2, None, "valid", kind), [x])
    check_grad(lambda x: op(x, 2), [x])


def test_max_pool_ties_go_to_the_first_maximum():
    x = Tensor(np.zeros((1, 2, 2, 1)), requires_grad=True)
    max_pool2d(x, 2).sum().backward()
    np.testing.assert_array_equal(x.grad[0, :, :, 0], [[1.0, 0.0], [0.0, 0.0]])


@pytest.mark.parametrize("pool,strides,padding", POOLS)
def test_max_pool_with_relu_equals_relu_then_pool(pool, strides, padding):
    # values and gradients bit for bit, ties included: zeros (ties among relu's zeros),
    # windows that are all negative, and equal positive values
    rng = np.random.default_rng(8)
    x = rng.choice([-2.0, -1.0, 0.0, 1.0, 2.0], size=(2, 7, 6, 3)).astype(np.float32)
    x[0, :4, :4] = -3.0
    gy = rng.standard_normal(max_pool2d(Tensor(x), pool, strides, padding).shape)
    a, b = Tensor(x, requires_grad=True), Tensor(x, requires_grad=True)
    ya = max_pool2d(relu(a), pool, strides, padding)
    yb = max_pool2d(b, pool, strides, padding, relu=True)
    np.testing.assert_array_equal(ya.data, yb.data)
    (ya * gy).sum().backward()
    (yb * gy).sum().backward()
    np.testing.assert_array_equal(a.grad, b.grad)
    assert np.any(a.grad != 0) and np.any(ya.data == 0)  # the check sees both kinds of cell


@pytest.mark.parametrize("pool,strides,padding", POOLS[:3])
def test_max_pool_with_relu_grad(pool, strides, padding):
    check_grad(lambda x: max_pool2d(x, pool, strides, padding, relu=True),
               [distinct((1, 5, 7, 2)) - 0.55])  # no value at the kink


def test_max_pool_same_pads_with_minus_infinity():
    x = -np.ones((1, 3, 3, 1))  # all negative: zero padding would win the max
    y = max_pool2d(Tensor(x), 2, padding="same")
    np.testing.assert_array_equal(y.data, -np.ones((1, 2, 2, 1)))


def test_global_avg_pool():
    x = np.random.default_rng(8).standard_normal((2, 3, 5, 4))
    check_forward(global_avg_pool2d, lambda x: x.mean(axis=(1, 2)), [x])
    check_grad(global_avg_pool2d, [x])


@pytest.mark.parametrize(("given", "canonical"), [
    ("SAME", "same"), ("valid", "valid"), (np.int64(2), 2), ([1, 0], (1, 0)),
    ([[0, 1], [2, 0]], ((0, 1), (2, 0))), ([1, [0, 2]], ((1, 1), (0, 2))),
])
def test_one_padding_parser_for_the_layer_and_the_ops(given, canonical):
    assert normalize_padding(given) == canonical
    assert Conv2D(1, 3, padding=given).padding == canonical  # the layer keeps the canonical form
    assert resolve_padding(given, (5, 5), 3, 1) == resolve_padding(canonical, (5, 5), 3, 1)


@pytest.mark.parametrize("bad", ["full", -1, (1, 2, 3), True, (1.5, 1), ((0, -1), (0, 0)), None])
def test_one_padding_parser_refuses_alike(bad):
    for parse in (normalize_padding, lambda p: Conv2D(1, 3, padding=p),
                  lambda p: resolve_padding(p, (5, 5), 3, 1)):
        with pytest.raises(ValueError, match="padding must be 'valid', 'same', an int >= 0"):
            parse(bad)


def test_pool_rejects_bad_padding():
    # pools take no explicit padding, in the layer and in the op alike
    with pytest.raises(ValueError, match="padding must be 'valid' or 'same', got 1"):
        max_pool2d(Tensor(np.zeros((1, 4, 4, 1))), 2, padding=1)
    with pytest.raises(ValueError, match="padding must be 'valid' or 'same', got 1"):
        MaxPool2D(padding=1)


# -- batch_norm ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 3, 2)])
@pytest.mark.parametrize("center,scale", [(True, True), (False, True), (True, False)])
def test_batch_norm_training_grad(shape, center, scale):
    rng = np.random.default_rng(9)
    c = shape[-1]
    x = rng.standard_normal(shape) * 2.0 + 0.5
    gamma, beta = rng.standard_normal(c), rng.standard_normal(c)
    rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)

    def fn(x, g, b):
        return batch_norm(x, g if scale else None, b if center else None, rm, rv, training=True)

    def reference(x, g, b):
        mean, var = x.mean(axis=tuple(range(x.ndim - 1))), x.var(axis=tuple(range(x.ndim - 1)))
        y = (x - mean) / np.sqrt(var + 1e-3)
        return y * (g if scale else 1.0) + (b if center else 0.0)

    check_forward(fn, reference, [x, gamma, beta])
    wrt = [0] + ([1] if scale else []) + ([2] if center else [])
    check_grad(fn, [x, gamma, beta], wrt=wrt)


def test_batch_norm_float32_grad_with_a_large_mean():
    """Backward sums gy * x and subtracts mean * sum(gy): float32 must stay close to float64."""
    rng = np.random.default_rng(17)
    x = rng.standard_normal((64, 6, 6, 4)) * 0.5 + 20.0
    gy = rng.standard_normal(x.shape)
    grads = {}
    for dtype in (np.float32, np.float64):
        c = x.shape[-1]
        xt = Tensor(x.astype(dtype), requires_grad=True)
        g, b = (Tensor(np.full(c, v, dtype), requires_grad=True) for v in (1.5, 0.2))
        y = batch_norm(xt, g, b, np.zeros(c, dtype), np.ones(c, dtype), training=True)
        (y * Tensor(gy.astype(dtype))).sum().backward()
        grads[dtype] = [t.grad for t in (xt, g, b)]
    for g32, g64 in zip(grads[np.float32], grads[np.float64], strict=True):
        assert g32.dtype == np.float32
        np.testing.assert_allclose(g32, g64, rtol=1e-3, atol=1e-3 * np.abs(g64).max())


@pytest.mark.parametrize("shape", [(6, 3), (2, 4, 3, 3)])
def test_batch_norm_running_stats_update(shape):
    rng = np.random.default_rng(10)
    x = rng.standard_normal(shape).astype(np.float32) * 3 + 1
    rm = rng.standard_normal(3).astype(np.float32)
    rv = rng.uniform(0.5, 2, 3).astype(np.float32)
    rm0, rv0 = rm.copy(), rv.copy()
    axes = tuple(range(x.ndim - 1))
    y = batch_norm(Tensor(x), None, None, rm, rv, training=True, momentum=0.9)
    assert y.dtype == np.float32
    np.testing.assert_allclose(rm, 0.9 * rm0 + 0.1 * x.mean(axis=axes), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rv, 0.9 * rv0 + 0.1 * x.var(axis=axes), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 2, 3)])
def test_batch_norm_inference_uses_running_stats(shape):
    rng = np.random.default_rng(11)
    x, gamma, beta = rng.standard_normal(shape), rng.standard_normal(3), rng.standard_normal(3)
    rm, rv = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    rm0, rv0 = rm.copy(), rv.copy()

    def fn(x, g, b):
        return batch_norm(x, g, b, rm, rv, training=False, epsilon=1e-3)

    check_forward(fn, lambda x, g, b: (x - rm) / np.sqrt(rv + 1e-3) * g + b, [x, gamma, beta])
    check_grad(fn, [x, gamma, beta])
    np.testing.assert_array_equal(rm, rm0)  # inference leaves the running stats alone
    np.testing.assert_array_equal(rv, rv0)


# -- dropout ------------------------------------------------------------------------------


def test_dropout_scales_kept_values_and_zeroes_the_rest():
    x = np.random.default_rng(12).uniform(1, 2, (200, 50)).astype(np.float32)
    y = dropout(Tensor(x), 0.25, training=True, rng=np.random.default_rng(0)).data
    kept = y != 0
    assert y.dtype == np.float32
    np.testing.assert_allclose(y[kept], x[kept] / 0.75, rtol=1e-6)
    assert abs(1 - kept.mean() - 0.25) < 0.02
    expected_mask = np.random.default_rng(0).random(x.shape, dtype=np.float32) >= 0.25
    np.testing.assert_array_equal(kept, expected_mask)


def test_dropout_identity_at_inference_and_rate_zero():
    x = Tensor(np.ones((3, 4)))
    assert dropout(x, 0.5, training=False, rng=np.random.default_rng(0)) is x
    assert dropout(x, 0.0, training=True, rng=np.random.default_rng(0)) is x
    with pytest.raises(ValueError):
        dropout(x, 1.0, training=True, rng=np.random.default_rng(0))


def test_dropout_mask_reproducible_for_a_seed():
    x = Tensor(np.ones((10, 10), np.float32))
    a = dropout(x, 0.5, True, np.random.default_rng(3)).data
    b = dropout(x, 0.5, True, np.random.default_rng(3)).data
    c = dropout(x, 0.5, True, np.random.default_rng(4)).data
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_dropout_grad_through_fixed_mask():
    x = np.random.default_rng(13).standard_normal((4, 5))
    check_grad(lambda x: dropout(x, 0.4, True, np.random.default_rng(7)), [x])
