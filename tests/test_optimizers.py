"""Optimizers against plain numpy re-implementations of Keras 3's update formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dlcli.core.tensor import Tensor
from dlcli.train.optimizers import (
    OPTIMIZERS,
    SGD,
    Adam,
    AdamW,
    build_optimizer,
    optimizer_fields,
)

# A small ill-conditioned quadratic: loss = 0.5 * sum(A * (w - C)^2), grad = A * (w - C).
A = [np.array([[1.0, 3.0, 0.5], [2.0, 0.25, 4.0]]), np.array([1.5, 0.7])]
C = [np.array([[0.5, -1.0, 2.0], [0.0, 1.0, -0.5]]), np.array([-0.3, 0.8])]
W0 = [np.array([[1.0, 2.0, -1.0], [0.5, -0.5, 1.5]]), np.array([0.2, -0.1])]


def loss_of(ws: list[np.ndarray]) -> float:
    return float(sum(0.5 * np.sum(a * (w - c) ** 2) for w, a, c in zip(ws, A, C, strict=True)))


def grads_of(ws: list[np.ndarray]) -> list[np.ndarray]:
    return [a * (w - c) for w, a, c in zip(ws, A, C, strict=True)]


# -- Keras 3 formulas, written the way keras/src/optimizers/*.py writes them ----------------
def keras_reference(name: str, hp: dict, steps: int) -> list[np.ndarray]:
    """Run `steps` updates on the quadratic with Keras's formulas (float64, no in-place tricks)."""
    ws = [w.copy() for w in W0]
    st: dict = {}
    u_product = 1.0
    for it in range(steps):
        t = it + 1
        lr = hp["learning_rate"]
        gs = grads_of(ws)
        if hp.get("clipnorm"):
            gs = [g * hp["clipnorm"] / max(np.sqrt(np.sum(g * g)), hp["clipnorm"]) for g in gs]
        if hp.get("clipvalue"):
            gs = [np.clip(g, -hp["clipvalue"], hp["clipvalue"]) for g in gs]
        if hp.get("weight_decay") is not None:
            ws = [w - w * hp["weight_decay"] * lr for w in ws]
        if name == "nadam":
            u_product = u_product * hp["beta_1"] * (1.0 - 0.5 * 0.96**t)
        for i, g in enumerate(gs):
            w = ws[i]
            s = st.setdefault(i, {})
            if name == "sgd":
                mom = hp["momentum"]
                if mom:
                    m = s.get("m", 0.0) * mom - g * lr
                    s["m"] = m
                    w = w + (m * mom - g * lr if hp["nesterov"] else m)
                else:
                    w = w - g * lr
            elif name == "rmsprop":
                rho = hp["rho"]
                v = rho * s.get("v", 0.0) + (1 - rho) * g**2
                s["v"] = v
                if hp["centered"]:
                    a = rho * s.get("a", 0.0) + (1 - rho) * g
                    s["a"] = a
                    den = v - a**2 + hp["epsilon"]
                else:
                    den = v + hp["epsilon"]
                inc = lr * g / np.sqrt(den)
                if hp["momentum"] > 0:
                    s["mom"] = hp["momentum"] * s.get("mom", 0.0) + inc
                    w = w - s["mom"]
                else:
                    w = w - inc
            elif name == "adagrad":
                acc = s.get("acc", hp["initial_accumulator_value"]) + g**2
                s["acc"] = acc
                w = w - lr * g / np.sqrt(acc + hp["epsilon"])
            elif name == "adadelta":
                rho, eps = hp["rho"], hp["epsilon"]
                ag = rho * s.get("ag", 0.0) + (1 - rho) * g**2
                delta = -(np.sqrt(s.get("ad", 0.0) + eps) * g) / np.sqrt(ag + eps)
                s["ag"], s["ad"] = ag, rho * s.get("ad", 0.0) + (1 - rho) * delta**2
                w = w + lr * delta
            elif name in ("adam", "adamw"):
                b1, b2 = hp["beta_1"], hp["beta_2"]
                alpha = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
                m = s.get("m", 0.0) + (g - s.get("m", 0.0)) * (1 - b1)
                v = s.get("v", 0.0) + (g**2 - s.get("v", 0.0)) * (1 - b2)
                s["m"], s["v"] = m, v
                if hp["amsgrad"]:
                    v = s["vh"] = np.maximum(s.get("vh", 0.0), v)
                w = w - m * alpha / (np.sqrt(v) + hp["epsilon"])
            elif name == "adamax":
                b1 = hp["beta_1"]
                m = s.get("m", 0.0) + (g - s.get("m", 0.0)) * (1 - b1)
                u = np.maximum(hp["beta_2"] * s.get("u", 0.0), np.abs(g))
                s["m"], s["u"] = m, u
                w = w - lr * m / ((1 - b1**t) * (u + hp["epsilon"]))
            elif name == "nadam":
                b1, b2 = hp["beta_1"], hp["beta_2"]
                u_t = b1 * (1.0 - 0.5 * 0.96**t)
                u_t1 = b1 * (1.0 - 0.5 * 0.96 ** (t + 1))
                up_t1 = u_product * u_t1
                m = s.get("m", 0.0) + (g - s.get("m", 0.0)) * (1 - b1)
                v = s.get("v", 0.0) + (g**2 - s.get("v", 0.0)) * (1 - b2)
                s["m"], s["v"] = m, v
                m_hat = u_t1 * m / (1 - up_t1) + (1 - u_t) * g / (1 - u_product)
                v_hat = v / (1 - b2**t)
                w = w - m_hat * lr / (np.sqrt(v_hat) + hp["epsilon"])
            ws[i] = w
    return ws


def make_params(dtype=np.float64) -> list[Tensor]:
    return [Tensor(w.astype(dtype), requires_grad=True) for w in W0]


def run(opt, params: list[Tensor], steps: int) -> list[np.ndarray]:
    for _ in range(steps):
        for p, g in zip(params, grads_of([p.data for p in params]), strict=True):
            p.grad = g.astype(p.data.dtype)
        opt.step()
        opt.zero_grad()
    return [p.data.copy() for p in params]


# name, config overrides: each base rule plus its variants
VARIANTS = [
    ("sgd", {}),
    ("sgd", {"momentum": 0.9}),
    ("sgd", {"momentum": 0.9, "nesterov": True}),
    ("rmsprop", {}),
    ("rmsprop", {"momentum": 0.5}),
    ("rmsprop", {"centered": True}),
    ("rmsprop", {"centered": True, "momentum": 0.9}),
    ("adagrad", {}),
    ("adadelta", {}),
    ("adam", {}),
    ("adam", {"amsgrad": True}),
    ("adamw", {}),
    ("adamax", {}),
    ("nadam", {}),
    ("adam", {"clipnorm": 0.5}),
    ("rmsprop", {"clipvalue": 0.3}),
    ("sgd", {"momentum": 0.9, "weight_decay": 0.1}),
    ("adam", {"weight_decay": 0.05, "amsgrad": True}),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items()) or 'default'}" for n, o in VARIANTS]


def hyper(name: str, overrides: dict) -> dict:
    hp = optimizer_fields(name)
    hp["learning_rate"] = 0.05
    hp.update(overrides)
    return hp


@pytest.mark.parametrize("name,overrides", VARIANTS, ids=IDS)
def test_matches_keras_formula(name, overrides):
    hp = hyper(name, overrides)
    params = make_params()
    opt = build_optimizer({"type": name, **hp}, params)
    got = run(opt, params, 5)
    want = keras_reference(name, hp, 5)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)
    assert opt.iterations == 5


def test_adam_hand_checked_steps():
    # loss = w^2 (g = 2w), w0 = 1, lr = 0.1, Keras defaults b1=.9, b2=.999, eps=1e-7.
    # step 1: g=2, m=0.2, v=0.004, alpha=0.1*sqrt(0.001)/0.1=0.0316228,
    #         w = 1 - 0.0316228*0.2/(0.0632456+1e-7) = 0.900000158
    # step 2: g=1.8000003, m=0.36, v=0.007236, alpha=0.1*sqrt(0.001999)/0.19=0.0235317,
    #         w = 0.900000158 - 0.0235317*0.36/(0.0850647+1e-7) = 0.800412502
    w = Tensor(np.array([1.0]), requires_grad=True)
    opt = Adam([w], learning_rate=0.1)
    expected = [0.900000158113633, 0.8004125019437753]
    for want in expected:
        w.grad = 2 * w.data
        opt.step()
        assert w.data[0] == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize(
    "nesterov,expected",
    [
        # m1 = -0.1*2 = -0.2, w1 = 0.8; g=1.6, m2 = 0.9*-0.2 - 0.16 = -0.34, w2 = 0.46
        (False, [0.8, 0.46]),
        # w1 = 1 + 0.9*-0.2 - 0.2 = 0.62; g=1.24, m2 = -0.18-0.124 = -0.304,
        # w2 = 0.62 + 0.9*-0.304 - 0.124 = 0.2224
        (True, [0.62, 0.2224]),
    ],
)
def test_sgd_momentum_hand_checked_steps(nesterov, expected):
    w = Tensor(np.array([1.0]), requires_grad=True)
    opt = SGD([w], learning_rate=0.1, momentum=0.9, nesterov=nesterov)
    for want in expected:
        w.grad = 2 * w.data
        opt.step()
        assert w.data[0] == pytest.approx(want, rel=1e-12)


# adadelta's steps start near sqrt(epsilon): a larger epsilon lets it move within the test budget
CONVERGE = {"adadelta": {"learning_rate": 1.0, "epsilon": 1e-3}, "adagrad": {"learning_rate": 0.2}}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_each_optimizer_reduces_a_convex_loss_via_autodiff(name):
    params = make_params(np.float32)
    opt = build_optimizer({"type": name, **CONVERGE.get(name, {"learning_rate": 0.05})}, params)
    a = [Tensor(x.astype(np.float32)) for x in A]
    c = [Tensor(x.astype(np.float32)) for x in C]
    start = loss_of([p.data.astype(np.float64) for p in params])
    for _ in range(150):
        terms = zip(params, a, c, strict=True)
        loss = sum(((p - ci) * (p - ci) * ai).sum() * 0.5 for p, ai, ci in terms)
        opt.zero_grad()
        loss.backward()
        opt.step()
    end = loss_of([p.data.astype(np.float64) for p in params])
    assert end < 0.2 * start, (name, start, end)
    for p in params:  # float32 stays float32, and so do the slots
        assert p.data.dtype == np.float32
    for arrays in opt.slots.values():
        assert all(s.dtype == np.float32 for s in arrays)


def test_step_never_modifies_grad_in_place():
    for name in OPTIMIZERS:
        params = make_params()
        opt = build_optimizer({"type": name, "clipnorm": 0.1, "weight_decay": 0.01}, params)
        grads = grads_of(W0)
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        snapshot = [g.copy() for g in grads]
        opt.step()
        for p, g in zip(params, snapshot, strict=True):
            np.testing.assert_array_equal(p.grad, g)


def test_clipnorm_clips_each_gradient_by_its_own_norm():
    w1 = Tensor(np.zeros(2), requires_grad=True)
    w2 = Tensor(np.zeros(2), requires_grad=True)
    opt = SGD([w1, w2], learning_rate=1.0, clipnorm=1.0)
    w1.grad = np.array([3.0, 4.0])  # norm 5 -> scaled to norm 1
    w2.grad = np.array([0.3, 0.4])  # norm 0.5 -> unchanged
    opt.step()
    np.testing.assert_allclose(w1.data, [-0.6, -0.8])
    np.testing.assert_allclose(w2.data, [-0.3, -0.4])


def test_clipvalue_clips_elementwise():
    w = Tensor(np.zeros(3), requires_grad=True)
    opt = SGD([w], learning_rate=1.0, clipvalue=0.5)
    w.grad = np.array([2.0, -0.2, -7.0])
    opt.step()
    np.testing.assert_allclose(w.data, [-0.5, 0.2, 0.5])


def test_only_one_clipping_mode():
    with pytest.raises(ValueError, match="only one"):
        SGD(make_params(), clipnorm=1.0, clipvalue=1.0)


def test_weight_decay_is_decoupled_and_scaled_by_lr():
    w = Tensor(np.array([2.0, -4.0]), requires_grad=True)
    opt = SGD([w], learning_rate=0.1, weight_decay=0.5)
    w.grad = np.zeros(2)
    opt.step()  # w *= 1 - 0.5*0.1 with no gradient step
    np.testing.assert_allclose(w.data, [1.9, -3.8])
    # adamw's default decay of 0.004 is applied before the Adam step, with the same gradient
    p1, p2 = make_params(), make_params()
    adamw, adam = AdamW(p1, learning_rate=0.01), Adam(p2, learning_rate=0.01)
    assert adamw.weight_decay == 0.004
    for p, q, g in zip(p1, p2, grads_of(W0), strict=True):
        p.grad, q.grad = g, g
        q.data = q.data * (1 - 0.004 * 0.01)
    adamw.step()
    adam.step()
    for p, q in zip(p1, p2, strict=True):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-14)


def test_adamw_needs_a_weight_decay():
    with pytest.raises(ValueError, match="weight_decay"):
        AdamW(make_params(), weight_decay=None)


@pytest.mark.parametrize("name,overrides", VARIANTS, ids=IDS)
def test_state_dict_round_trip_continues_identically(name, overrides):
    hp = hyper(name, overrides)
    params = make_params(np.float32)
    opt = build_optimizer({"type": name, **hp}, params)
    run(opt, params, 3)
    state = opt.state_dict()
    weights = [p.data.copy() for p in params]
    continued = run(opt, params, 4)

    fresh = [Tensor(w.copy(), requires_grad=True) for w in weights]
    opt2 = build_optimizer({"type": name, **hp}, fresh)
    opt2.load_state_dict(state)
    assert opt2.iterations == 3
    resumed = run(opt2, fresh, 4)
    for a, b in zip(continued, resumed, strict=True):
        np.testing.assert_array_equal(a, b)


def test_state_dict_layout_and_copies():
    params = make_params()
    opt = Adam(params, amsgrad=True)
    run(opt, params, 1)
    state = opt.state_dict()
    assert sorted(state) == sorted(
        ["iterations", "learning_rate", "m/0", "m/1", "v/0", "v/1", "v_hat/0", "v_hat/1"]
    )
    assert int(state["iterations"]) == 1 and state["m/0"].shape == (2, 3)
    before = state["m/0"].copy()
    run(opt, params, 1)
    np.testing.assert_array_equal(state["m/0"], before)  # a copy, not a view of the slot
    nadam = build_optimizer({"type": "nadam"}, make_params())
    assert "u_product" in nadam.state_dict()
    assert "momentum/0" not in SGD(make_params()).state_dict()  # no slot without momentum


def test_load_state_dict_rejects_mismatches():
    opt = Adam(make_params())
    state = opt.state_dict()
    with pytest.raises(ValueError, match="missing keys"):
        SGD(make_params(), momentum=0.9).load_state_dict(state)
    bad = dict(state)
    bad["m/0"] = np.zeros((3, 3))
    with pytest.raises(ValueError, match="m/0"):
        Adam(make_params()).load_state_dict(bad)


def test_state_dict_restores_learning_rate_and_iterations():
    opt = SGD(make_params(), learning_rate=0.3)
    opt.iterations = 7
    state = opt.state_dict()
    other = SGD(make_params())
    other.load_state_dict(state)
    assert other.learning_rate == 0.3 and other.iterations == 7


def test_params_without_grad_are_skipped_and_no_grads_is_a_no_op():
    params = make_params()
    opt = Adam(params)
    opt.step()
    assert opt.iterations == 0
    params[0].grad = np.ones_like(params[0].data)
    opt.step()
    assert opt.iterations == 1
    np.testing.assert_array_equal(params[1].data, W0[1])
    assert not np.array_equal(params[0].data, W0[0])


def test_zero_grad_and_learning_rate_setter():
    params = make_params()
    opt = SGD(params)
    for p in params:
        p.grad = np.ones_like(p.data)
    opt.zero_grad()
    assert all(p.grad is None for p in params)
    opt.learning_rate = np.float32(0.5)
    assert opt.learning_rate == 0.5 and isinstance(opt.learning_rate, float)
    with pytest.raises(ValueError):
        opt.learning_rate = -1.0


def test_build_optimizer_defaults_match_keras():
    expected = {
        "sgd": {"learning_rate": 0.01, "momentum": 0.0, "nesterov": False},
        "rmsprop": {"learning_rate": 0.001, "rho": 0.9, "momentum": 0.0, "epsilon": 1e-7,
                    "centered": False},
        "adagrad": {"learning_rate": 0.001, "initial_accumulator_value": 0.1, "epsilon": 1e-7},
        "adadelta": {"learning_rate": 0.001, "rho": 0.95, "epsilon": 1e-7},
        "adam": {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7,
                 "amsgrad": False},
        "adamw": {"learning_rate": 0.001, "weight_decay": 0.004, "beta_1": 0.9, "beta_2": 0.999,
                  "epsilon": 1e-7, "amsgrad": False},
        "adamax": {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
        "nadam": {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
    }
    assert set(expected) == set(OPTIMIZERS)
    for name, defaults in expected.items():
        fields = optimizer_fields(name)
        for common in ("weight_decay", "clipnorm", "clipvalue"):
            assert common in fields
        opt = build_optimizer({"type": name}, make_params())
        for key, value in defaults.items():
            assert fields[key] == value, (name, key)
            assert getattr(opt, key) == value, (name, key)


def test_build_optimizer_names_and_errors():
    opt = build_optimizer({"type": "AdaM", "lr": 0.2}, make_params())
    assert isinstance(opt, Adam) and not isinstance(opt, AdamW) and opt.learning_rate == 0.2
    with pytest.raises(ValueError, match="unknown optimizer 'adamm'.*adam"):
        build_optimizer({"type": "adamm"}, make_params())
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['beta1'\].*beta_1"):
        build_optimizer({"type": "adam", "beta1": 0.8}, make_params())
    with pytest.raises(ValueError, match="momentum"):
        build_optimizer({"type": "sgd", "momentum": 0.5, "nesterov": True, "amsgrad": True},
                        make_params())
    with pytest.raises(ValueError, match="type"):
        build_optimizer({"learning_rate": 0.1}, make_params())
    with pytest.raises(ValueError, match="momentum must be"):
        build_optimizer({"type": "sgd", "momentum": 1.5}, make_params())
    with pytest.raises(ValueError, match="both"):
        build_optimizer({"type": "sgd", "lr": 0.1, "learning_rate": 0.2}, make_params())


def test_nadam_first_step_by_hand():
    # t=1: u1 = 0.9*(1-0.5*0.96) = 0.468, u2 = 0.9*(1-0.5*0.9216) = 0.48528,
    # prod1 = 0.468, prod2 = 0.468*0.48528; g = 1: m = 0.1, v = 0.001
    # m_hat = u2*0.1/(1-prod2) + (1-u1)*1/(1-prod1); v_hat = 1
    w = Tensor(np.array([0.0]), requires_grad=True)
    opt = build_optimizer({"type": "nadam", "learning_rate": 1.0}, [w])
    w.grad = np.array([1.0])
    opt.step()
    u1, u2 = 0.468, 0.48528
    m_hat = u2 * 0.1 / (1 - u1 * u2) + (1 - u1) / (1 - u1)
    assert w.data[0] == pytest.approx(-m_hat / (1.0 + 1e-7), rel=1e-12)
    assert math.isclose(opt.u_product, u1)
