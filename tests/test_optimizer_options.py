"""global_clipnorm, gradient_accumulation_steps and use_ema, with Keras 3's rules."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli.core.tensor import Tensor
from dlcli.train.optimizers import OPTIMIZERS, build_optimizer


def params(seed: int = 0) -> list[Tensor]:
    rng = np.random.default_rng(seed)
    return [Tensor(rng.normal(size=(3, 2)), requires_grad=True),
            Tensor(rng.normal(size=(4,)), requires_grad=True)]


def grads(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(100 + seed)
    return [rng.normal(size=(3, 2)) * 5, rng.normal(size=(4,)) * 5]


def run(cfg: dict, steps: int, seed: int = 0):
    ps = params(seed)
    opt = build_optimizer(cfg, ps)
    for k in range(steps):
        for p, g in zip(ps, grads(k), strict=True):
            p.grad = g.copy()
        opt.step()
        opt.zero_grad()
    return ps, opt


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_takes_the_options(name: str) -> None:
    cfg = {"type": name, "global_clipnorm": 1.0, "gradient_accumulation_steps": 2,
           "use_ema": True, "ema_momentum": 0.9}
    ps, opt = run(cfg, 4)
    assert opt.iterations == 4 and all(np.isfinite(p.data).all() for p in ps)
    state = opt.state_dict()
    assert "accumulated/0" in state and "average/1" in state
    again = build_optimizer(cfg, params())
    again.load_state_dict(state)
    np.testing.assert_array_equal(again.slots["average"][0], opt.slots["average"][0])


def test_global_clipnorm_scales_all_gradients_together() -> None:
    ps, _ = run({"type": "sgd", "learning_rate": 1.0, "global_clipnorm": 2.0}, 1)
    g = grads(0)
    norm = np.sqrt(sum((x * x).sum() for x in g))
    for p, p0, x in zip(ps, params(), g, strict=True):
        np.testing.assert_allclose(p.data, p0.data - x * 2.0 / norm)
    with pytest.raises(ValueError, match="only one of"):
        build_optimizer({"type": "sgd", "clipnorm": 1.0, "global_clipnorm": 1.0}, params())


def test_accumulation_updates_every_n_steps_with_the_mean() -> None:
    ps, opt = run({"type": "sgd", "learning_rate": 0.5, "gradient_accumulation_steps": 3}, 2)
    for p, p0 in zip(ps, params(), strict=True):
        np.testing.assert_array_equal(p.data, p0.data)  # nothing applied yet
    ps, opt = run({"type": "sgd", "learning_rate": 0.5, "gradient_accumulation_steps": 3}, 3)
    mean = [sum(grads(k)[j] for k in range(3)) / 3 for j in range(2)]
    for p, p0, g in zip(ps, params(), mean, strict=True):
        np.testing.assert_allclose(p.data, p0.data - 0.5 * g)
    assert opt.iterations == 3 and not opt.slots["accumulated"][0].any()
    # Adam counts every step: its first update uses t = 3 in the bias correction (Keras)
    adam, _ = run({"type": "adam", "learning_rate": 0.1, "gradient_accumulation_steps": 3}, 3)
    g = mean[0]
    m, v = 0.1 * g, 0.001 * g * g
    alpha = 0.1 * np.sqrt(1 - 0.999**3) / (1 - 0.9**3)  # Keras's form of the bias correction
    want = params()[0].data - alpha * m / (np.sqrt(v) + 1e-7)
    np.testing.assert_allclose(adam[0].data, want, rtol=1e-6)


def test_ema_formula_swap_and_finalize() -> None:
    ps0 = params()
    ps, opt = run({"type": "sgd", "learning_rate": 0.1, "use_ema": True, "ema_momentum": 0.8}, 2)
    w1 = ps0[0].data - 0.1 * grads(0)[0]
    w2 = w1 - 0.1 * grads(1)[0]
    average = 0.8 * w1 + 0.2 * w2  # first step: the average is the weight itself
    np.testing.assert_allclose(opt.slots["average"][0], average)
    with opt.averaged():
        np.testing.assert_allclose(ps[0].data, average)
    np.testing.assert_allclose(ps[0].data, w2)  # back to the trained values
    opt.finalize()
    np.testing.assert_allclose(ps[0].data, average)
