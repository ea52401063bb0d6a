"""Random numbers on the device: the CounterRNG kernel equals its numpy form, and dropout
masks are reproducible from a seed and from a saved state."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli.core import Tensor
from dlcli.core.random import CounterRNG
from dlcli.nn.layers import Dense, Dropout
from dlcli.nn.sequential import Sequential

pytestmark = pytest.mark.gpu  # and skipped without cupy and a device (conftest)


def test_counter_rng_kernel_equals_numpy(cp) -> None:
    for dtype in (np.float32, np.float64):
        a, b = CounterRNG(99, 5, np), CounterRNG(99, 5, cp)
        for shape in ((7,), (33, 65), (2, 3, 4)):
            want, got = a.random(shape, dtype=dtype), b.random(shape, dtype=dtype)
            assert got.dtype == dtype and got.shape == shape
            np.testing.assert_array_equal(got.get(), want)
        assert a.state == b.state
    want = CounterRNG(3, 0, np).standard_normal((50, 3))
    got = CounterRNG(3, 0, cp).standard_normal((50, 3))
    np.testing.assert_allclose(got.get(), want, rtol=1e-6, atol=1e-6)


def _model(seed: int) -> Sequential:
    return Sequential([Dense(64), Dropout(0.5), Dense(4)], (8,)).build(seed)


def test_dropout_on_the_device_is_deterministic(cp) -> None:
    x = cp.ones((16, 8), dtype=np.float32)
    a, b = _model(1).to(cp), _model(1).to(cp)
    out_a = [a(Tensor(x), training=True).data.get() for _ in range(3)]
    out_b = [b(Tensor(x), training=True).data.get() for _ in range(3)]
    for u, v in zip(out_a, out_b, strict=True):
        np.testing.assert_array_equal(u, v)  # one seed, one stream of masks
    assert not np.array_equal(out_a[0], out_a[1])  # a new mask each step
    other = _model(2).to(cp)
    assert not np.array_equal(other(Tensor(x), training=True).data.get(), out_a[0])
    drop = next(layer for layer in a.layers if isinstance(layer, Dropout))
    assert drop.device_rng is not None and drop.device_rng.xp is cp


def test_dropout_continues_from_a_saved_state(cp) -> None:
    x = cp.ones((16, 8), dtype=np.float32)
    a = _model(5).to(cp)
    a(Tensor(x), training=True)
    drop = next(layer for layer in a.layers if isinstance(layer, Dropout))
    saved, model_state = dict(drop.device_rng.state), a.rng.bit_generator.state
    want = a(Tensor(x), training=True).data.get()
    b = _model(5).to(cp)
    b.rng.bit_generator.state = model_state
    b.set_rng(b.rng)
    drop_b = next(layer for layer in b.layers if isinstance(layer, Dropout))
    drop_b.device_rng = CounterRNG.from_state(saved, cp)
    np.testing.assert_array_equal(b(Tensor(x), training=True).data.get(), want)
