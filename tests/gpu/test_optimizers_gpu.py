"""Every optimizer step on cupy (one fused kernel per parameter) against the numpy path, in
float64 and float32, with the options that run around the kernel (decay, clipping, EMA)."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli.core import Tensor
from dlcli.train import optimizers

pytestmark = pytest.mark.gpu  # and skipped without cupy and a device (conftest)

VARIANTS = [
    ("sgd", {}), ("sgd", {"momentum": 0.9}), ("sgd", {"momentum": 0.9, "nesterov": True}),
    ("rmsprop", {}), ("rmsprop", {"centered": True, "momentum": 0.5}),
    ("rmsprop", {"momentum": 0.5}), ("rmsprop", {"centered": True}),
    ("adagrad", {}), ("adadelta", {"learning_rate": 1.0}), ("adam", {}),
    ("adam", {"amsgrad": True}), ("adamw", {}), ("adamax", {}), ("nadam", {}),
    ("adam", {"weight_decay": 0.01, "clipnorm": 0.5}), ("sgd", {"clipvalue": 0.1}),
    ("nadam", {"global_clipnorm": 1.0, "use_ema": True}),
    ("adam", {"gradient_accumulation_steps": 2}),
]


def _steps(xp, name, options, dtype, starts, grads):
    params = [Tensor(xp.asarray(a, dtype=dtype), requires_grad=True) for a in starts]
    opt = optimizers.build_optimizer({"type": name, **options}, params)
    for step in grads:
        for p, g in zip(params, step, strict=True):
            p.grad = xp.asarray(g, dtype=dtype)
        opt.step()
    host = (lambda a: a.get()) if xp is not np else np.asarray
    slots = {k: [host(a) for a in v] for k, v in opt.slots.items()}
    return [host(p.data) for p in params], slots


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-14), (np.float32, 1e-6)])
@pytest.mark.parametrize("name, options", VARIANTS, ids=lambda v: str(v))
def test_fused_step_matches_numpy(cp, name, options, dtype, rtol) -> None:
    rng = np.random.default_rng(0)
    shapes = [(33, 17), (17,), (3, 3, 2, 4)]
    starts = [rng.standard_normal(s) for s in shapes]
    grads = [[rng.standard_normal(s) for s in shapes] for _ in range(5)]
    want, want_slots = _steps(np, name, options, dtype, starts, grads)
    got, got_slots = _steps(cp, name, options, dtype, starts, grads)
    # built without fused multiply-adds, the kernels round as numpy does: equal in practice;
    # the tolerance only allows for a sqrt or division rounded differently
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=0)
    for slot, arrays in want_slots.items():
        for a, b in zip(got_slots[slot], arrays, strict=True):
            np.testing.assert_allclose(a, b, rtol=rtol, atol=0, err_msg=slot)


def test_every_optimizer_has_a_fused_kernel(cp) -> None:
    for name, cls in optimizers.OPTIMIZERS.items():
        p = Tensor(cp.zeros(3), requires_grad=True)
        opt = cls([p])
        assert opt._fused(0, 0.1, 1) is not None, name
