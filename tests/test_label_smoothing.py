"""Label smoothing with Keras's formulas: y * (1 - e) + e / k, binary y * (1 - e) + e / 2."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli.core.tensor import Tensor
from dlcli.nn.layers import Dense
from dlcli.nn.sequential import Sequential
from dlcli.train.evaluate import evaluate_model
from dlcli.train.losses import LossSpec


def model(units: int, activation: str | None, seed: int = 0) -> Sequential:
    return Sequential([Dense(units, activation)], (4,)).build(seed)


def _log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


@pytest.mark.parametrize("name", ["categorical_crossentropy", "sparse_categorical_crossentropy"])
@pytest.mark.parametrize("activation, from_logits", [("softmax", False), (None, True)])
def test_softmax_losses_smooth_the_targets(name, activation, from_logits) -> None:
    m = model(3, activation)
    x = np.random.default_rng(1).normal(size=(5, 4))
    labels = np.array([0, 2, 1, 1, 0])
    y = labels if name.startswith("sparse") else np.eye(3)[labels]
    e = 0.1
    spec = LossSpec(name, from_logits=from_logits, label_smoothing=e)
    xt = Tensor(x, requires_grad=False)
    value, _ = spec(m, xt, y, training=True)
    z = x @ m.layers[0].params["kernel"].data + m.layers[0].params["bias"].data
    t = np.eye(3)[labels] * (1 - e) + e / 3
    want = -(t * _log_softmax(z)).sum(axis=1).mean()
    assert float(value.data) == pytest.approx(want, rel=1e-6)
    value.backward()  # d loss / d logits = softmax - t: check through the bias gradient
    p = np.exp(_log_softmax(z))
    np.testing.assert_allclose(m.layers[0].params["bias"].grad, (p - t).mean(axis=0), rtol=1e-5,
                               atol=1e-7)
    plain = LossSpec(name, from_logits=from_logits)(m, xt, y, training=True)[0]
    assert float(plain.data) != pytest.approx(want)  # smoothing changes the loss


@pytest.mark.parametrize("activation, from_logits", [("sigmoid", False), (None, True)])
def test_binary_smoothing(activation, from_logits) -> None:
    m = model(1, activation)
    x = np.random.default_rng(2).normal(size=(6, 4))
    y = np.array([0, 1, 1, 0, 1, 0], np.float64)
    e = 0.2
    value, out = LossSpec("binary_crossentropy", from_logits, label_smoothing=e)(
        m, Tensor(x), y, training=True)
    t = y * (1 - e) + e / 2
    p = out[:, 0]
    want = -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean()
    assert float(value.data) == pytest.approx(want, rel=1e-6)


def test_keras_reference_value() -> None:
    # keras.losses.CategoricalCrossentropy(label_smoothing=0.1)([[0, 1, 0]], [[.05, .9, .05]])
    # = -(0.0333 log .05 + 0.9333 log .9 + 0.0333 log .05) = 0.29805
    m = Sequential([Dense(3, "softmax")], (3,)).build(0)
    layer = m.layers[0]
    layer.params["kernel"].data[...] = np.eye(3)
    layer.params["bias"].data[...] = 0
    x = np.log(np.array([[0.05, 0.9, 0.05]]))
    value, _ = LossSpec("categorical_crossentropy", label_smoothing=0.1)(
        m, Tensor(x.astype(np.float32)), np.array([[0.0, 1.0, 0.0]]), training=False)
    assert float(value.data) == pytest.approx(0.29805, abs=1e-4)


def test_evaluation_reports_the_unsmoothed_loss_too() -> None:
    m = model(3, "softmax")
    x = np.random.default_rng(3).normal(size=(10, 4)).astype(np.float32)
    y = np.arange(10) % 3
    smooth = LossSpec("sparse_categorical_crossentropy", label_smoothing=0.2)
    logs, _ = evaluate_model(m, smooth, x, y, 4, [], 3, unsmoothed=True)
    plain, _ = evaluate_model(m, smooth.unsmoothed, x, y, 4, [], 3)
    assert logs["unsmoothed_loss"] == pytest.approx(plain["loss"], rel=1e-6)
    assert logs["loss"] != pytest.approx(plain["loss"])
    assert "unsmoothed_loss" not in evaluate_model(m, smooth, x, y, 4, [], 3)[0]
