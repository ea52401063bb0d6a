"""Residual blocks: shapes, shortcuts, names, counts, gradients, nesting and export."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli.core.gradcheck import check_grad
from dlcli.core.tensor import Tensor
from dlcli.nn.layers import (
    Activation,
    BatchNorm,
    Conv2D,
    Dense,
    Flatten,
    GlobalAveragePooling2D,
    MaxPool2D,
    ShapeError,
)
from dlcli.nn.layers.residual import Residual
from dlcli.nn.sequential import Sequential
from dlcli.nn.summary import summary_dict, summary_text


def resnet() -> Sequential:
    return Sequential([
        Conv2D(4, 3, padding="same", activation="relu"),
        Residual([Conv2D(4, 3, padding="same"), BatchNorm(), Activation("relu"),
                  Conv2D(4, 3, padding="same")], activation="relu"),
        Residual([Conv2D(6, 3, strides=2, padding="same", activation="relu"),
                  Residual([Conv2D(6, 3, padding="same", activation="tanh")])],
                 shortcut="projection", activation="relu"),
        MaxPool2D(2),
        Flatten(),
        Dense(3, activation="softmax"),
    ], (8, 8, 2)).build(0)


def test_shapes_names_and_exact_counts() -> None:
    m = resnet()
    assert m.output_shape == (3,)
    names = [layer.name for layer in m.walk()]
    assert names == ["conv2d", "residual", "conv2d_1", "batch_normalization", "activation",
                     "conv2d_2", "residual_1", "conv2d_3", "residual_2", "conv2d_4",
                     "projection", "max_pooling2d", "flatten", "dense"]
    s = summary_dict(m)
    rows = {r["name"]: r for r in s["layers"]}
    assert rows["residual"]["params"] == 2 * (3 * 3 * 4 * 4 + 4) + 4 * 4
    assert rows["projection"]["type"] == "Conv2D" and rows["projection"]["params"] == 4 * 6 + 6
    assert rows["projection"]["output_shape"] == [4, 4, 6]
    assert rows["residual_1"]["params"] == (3 * 3 * 4 * 6 + 6) + (3 * 3 * 6 * 6 + 6) + 30
    assert rows["conv2d_4"]["depth"] == 2
    assert s["total_params"] == m.count_params() == sum(w.size for w in m.weights)
    assert s["non_trainable_params"] == 8  # the block's BatchNorm moving statistics
    text = summary_text(m)
    assert "\n    conv2d_4 (Conv2D)" in text and "\n  projection (Conv2D)" in text


def test_identity_with_other_shapes_names_both() -> None:
    with pytest.raises(ShapeError, match=r"maps \(8, 8, 2\) to \(8, 8, 5\).*projection"):
        Sequential([Residual([Conv2D(5, 3, padding="same")])], (8, 8, 2)).build(0)
    with pytest.raises(ShapeError, match="no 1x1 projection"):
        Sequential([Residual([Conv2D(5, 3)], shortcut="projection")], (8, 8, 2)).build(0)


def test_dense_projection_and_formula() -> None:
    block = Residual([Dense(3, activation="tanh")], shortcut="projection", activation="relu")
    m = Sequential([block], (5,)).build(1)
    x = np.random.default_rng(0).normal(size=(4, 5))
    p = {k: v for k, v in m.get_weights().items()}
    f = np.tanh(x @ p["dense/kernel"] + p["dense/bias"])
    s = x @ p["projection/kernel"] + p["projection/bias"]
    np.testing.assert_allclose(m(Tensor(x.astype(np.float32))).data, np.maximum(f + s, 0),
                               rtol=1e-5, atol=1e-6)


def test_gradients_through_blocks() -> None:
    m = resnet()
    for w in m.weights:
        w.data = w.data.astype(np.float64)
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 2))
    check_grad(lambda t: m(t, training=True), [x])
    kernel = m.walk()[9].params["kernel"]  # inside the nested block
    check_grad(lambda k: _with(m, kernel, k, x), [kernel.data.copy()])


def _with(model, weight, value, x):
    old = weight.data
    weight_tensor = value
    layer = next(la for la in model.walk() if weight in la.params.values())
    key = next(k for k, v in layer.params.items() if v is weight)
    layer.params[key] = weight_tensor
    try:
        return model(Tensor(x), training=True)
    finally:
        layer.params[key] = weight
        weight.data = old


def test_weights_round_trip_and_freezing() -> None:
    a, b = resnet(), Sequential(resnet().layers, (8, 8, 2))
    b.build(7)
    b.set_weights(a.get_weights())
    x = np.random.default_rng(2).normal(size=(3, 8, 8, 2)).astype(np.float32)
    np.testing.assert_array_equal(a(Tensor(x)).data, b(Tensor(x)).data)
    block = a.layers[2]
    block.trainable = False
    assert all(not w.requires_grad for w in block.trainable_weights + block.non_trainable_weights)
    assert summary_dict(a)["layers"][6]["trainable_params"] == 0


def test_residual_model_exports_to_onnx() -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from dlcli.export.onnx import build_onnx
    from dlcli.predict.runner import model_outputs

    m = Sequential([
        Residual([Conv2D(2, 3, padding="same"), BatchNorm()]),       # NHWC in, NCHW out
        Residual([Dense(2, activation="relu")], activation="relu"),  # NCHW in, NHWC out
        Residual([Conv2D(3, 3, strides=2, padding="same"), BatchNorm(),
                  Residual([Conv2D(3, 1, activation="elu")])],
                 shortcut="projection", activation="relu"),
        GlobalAveragePooling2D(),
        Residual([Dense(3)], activation="relu"),
        Dense(2, activation="softmax"),
    ], (7, 7, 2)).build(3)
    for layer in m.walk():
        if isinstance(layer, BatchNorm):
            layer.params["moving_mean"].data[...] = 0.3
            layer.params["moving_variance"].data[...] = 2.0
    proto = build_onnx(m, {"mode": "none"})
    x = np.random.default_rng(0).normal(size=(5, 7, 7, 2)).astype(np.float32)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"input": x})[0], model_outputs(m, x, 5),
                               atol=1e-5)


def test_config_round_trip() -> None:
    block = resnet().layers[2]
    again = Residual(**block.get_config())
    assert again.get_config() == block.get_config()
