"""Layers, initializers, regularizers and Sequential: gradients, configs, shapes, counts."""

from __future__ import annotations

import inspect
import json
import math

import numpy as np
import pytest

from dlcli.core import ops
from dlcli.core.gradcheck import check_grad
from dlcli.core.tensor import Function, Tensor
from dlcli.errors import DlcliError
from dlcli.nn.initializers import INITIALIZERS, compute_fans, get_initializer
from dlcli.nn.layers import (
    LAYERS,
    Activation,
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    Layer,
    MaxPool2D,
    Residual,
    ShapeError,
)
from dlcli.nn.regularizers import L1L2, get_regularizer
from dlcli.nn.sequential import ModelError, Sequential


def built(layer: Layer, input_shape: tuple[int, ...], seed: int = 0) -> Layer:
    layer.build(input_shape, np.random.default_rng(seed))
    return layer


def check_layer(layer: Layer, x: np.ndarray, training: bool = False, reseed: int | None = None,
                **tol: float) -> None:
    """Gradient check of the input and every trainable weight, all in float64.

    The layer's weights are swapped for the checked Tensors during each call; non-trainable
    weights are swapped for float64 copies so nothing mixes precisions. `reseed` gives a
    dropout layer the same generator on every call, so every evaluation draws the same mask.
    """
    originals = dict(layer.params)
    names = [n for n, w in originals.items() if w.requires_grad]
    fixed = {n: Tensor(w.data.astype(np.float64)) for n, w in originals.items()
             if not w.requires_grad}

    def fn(xt: Tensor, *ws: Tensor) -> Tensor:
        layer.params.update(fixed)
        layer.params.update(zip(names, ws, strict=True))
        if reseed is not None:
            layer.set_rng(np.random.default_rng(reseed))
        try:
            return layer(xt, training=training)
        finally:
            layer.params.update(originals)

    weights = [originals[n].data.astype(np.float64) for n in names]
    # nonzero biases and BatchNorm offsets, so the check sees their effect on every path
    weights = [w + np.random.default_rng(7).uniform(-0.5, 0.5, w.shape) for w in weights]
    check_grad(fn, [x, *weights], **tol)


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


# -- gradients ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (Dense(3, activation="tanh"), (4, 5)),
        (Dense(4, use_bias=False), (1, 3)),
        (Dense(3, activation="softmax"), (2, 3, 5)),  # acts on the last axis of a 3-D input
    ],
)
def test_dense_gradients(layer: Dense, shape: tuple[int, ...]) -> None:
    check_layer(built(layer, shape[1:]), rand(*shape))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kernel_size": 3},
        {"kernel_size": (2, 3), "strides": (2, 1), "padding": "same", "activation": "sigmoid"},
        {"kernel_size": 3, "strides": 2, "padding": "same", "use_bias": False},
        {"kernel_size": 2, "padding": ((1, 0), (0, 2))},
    ],
)
def test_conv2d_gradients(kwargs: dict) -> None:
    layer = built(Conv2D(4, **kwargs), (5, 6, 3))
    check_layer(layer, rand(2, 5, 6, 3))


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (MaxPool2D, {}),
        (MaxPool2D, {"pool_size": 3, "strides": 2, "padding": "same"}),
        (AvgPool2D, {}),
        (AvgPool2D, {"pool_size": (2, 3), "strides": 1}),
        (AvgPool2D, {"pool_size": 3, "strides": 2, "padding": "same"}),
    ],
)
def test_pool_gradients(cls: type[Layer], kwargs: dict) -> None:
    # a permutation keeps every value distinct, so no max is a near-tie for central differences
    x = np.random.default_rng(1).permutation(2 * 5 * 7 * 3).reshape(2, 5, 7, 3) / 10.0
    check_layer(built(cls(**kwargs), (5, 7, 3)), x)


def test_global_average_pooling_flatten_activation_gradients() -> None:
    check_layer(built(GlobalAveragePooling2D(), (3, 4, 2)), rand(2, 3, 4, 2))
    check_layer(built(Flatten(), (3, 4, 2)), rand(2, 3, 4, 2))
    check_layer(built(Activation("softmax"), (5,)), rand(3, 5))
    check_layer(built(Activation("elu"), (2, 3)), rand(3, 2, 3))


@pytest.mark.parametrize("shape", [(8, 4), (3, 3, 2, 4)])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_gradients(shape: tuple[int, ...], training: bool) -> None:
    check_layer(built(BatchNorm(), shape[1:]), rand(*shape), training=training)


def test_batchnorm_without_center_and_scale_has_only_moving_stats() -> None:
    layer = built(BatchNorm(center=False, scale=False), (3,))
    assert list(layer.params) == ["moving_mean", "moving_variance"]
    assert layer.trainable_weights == []
    check_layer(layer, rand(6, 3), training=True)


class _DoubledGrad(Function):
    """Identity forward, gradient doubled: a deliberately wrong op."""

    def forward(self, x):
        return x

    def backward(self, gy):
        return 2 * gy


class _WrongDense(Dense):
    def pre_activation(self, x: Tensor, training: bool = False) -> Tensor:
        return ops.matmul(x, _DoubledGrad.apply(self.params["kernel"])) + self.params["bias"]


def test_layer_check_bites_on_a_wrong_weight_gradient() -> None:
    # the check must see the swapped-in weights, not copies: a wrong kernel gradient fails
    with pytest.raises(AssertionError, match="gradient of input 1"):
        check_layer(built(_WrongDense(3), (4,)), rand(2, 4))


def test_dropout_gradient_with_fixed_rng() -> None:
    layer = built(Dropout(0.4), (6,))
    check_layer(layer, rand(5, 6), training=True, reseed=3)


# -- forward behaviour ----------------------------------------------------------------------


def test_dense_forward_matches_numpy() -> None:
    layer = built(Dense(3, activation="relu", bias_initializer="ones"), (4,))
    x = rand(5, 4).astype(np.float32)
    want = np.maximum(x @ layer.params["kernel"].data + 1.0, 0)
    np.testing.assert_allclose(layer(Tensor(x)).data, want, rtol=1e-5, atol=1e-6)


def test_conv2d_uses_keras_kernel_layout() -> None:
    layer = built(Conv2D(2, (2, 3), use_bias=False), (4, 5, 3))
    x, w = rand(1, 4, 5, 3).astype(np.float32), layer.params["kernel"].data
    want = np.zeros((1, 3, 3, 2), np.float32)
    for i in range(3):
        for j in range(3):
            want[0, i, j] = np.einsum("hwc,hwco->o", x[0, i:i + 2, j:j + 3], w)
    np.testing.assert_allclose(layer(Tensor(x)).data, want, rtol=1e-4, atol=1e-5)


def test_pools_forward_match_numpy() -> None:
    x = rand(2, 4, 6, 3).astype(np.float32)
    blocks = x.reshape(2, 2, 2, 3, 2, 3)  # (N, Ho, 2, Wo, 2, C)
    np.testing.assert_allclose(built(MaxPool2D(), (4, 6, 3))(Tensor(x)).data,
                               blocks.max(axis=(2, 4)), rtol=1e-6)
    np.testing.assert_allclose(built(AvgPool2D(), (4, 6, 3))(Tensor(x)).data,
                               blocks.mean(axis=(2, 4)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(built(GlobalAveragePooling2D(), (4, 6, 3))(Tensor(x)).data,
                               x.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("layer", "in_shape", "out_shape"),
    [
        (Conv2D(8, 3), (28, 28, 1), (26, 26, 8)),
        (Conv2D(8, 3, padding="same"), (28, 28, 1), (28, 28, 8)),
        (Conv2D(8, 3, strides=2, padding="same"), (7, 7, 1), (4, 4, 8)),
        (Conv2D(8, (3, 1), strides=(2, 1)), (9, 4, 2), (4, 4, 8)),
        (Conv2D(8, 3, padding=1), (5, 5, 2), (5, 5, 8)),
        (Conv2D(8, 3, padding=((0, 2), (1, 1))), (5, 5, 2), (5, 5, 8)),
        (MaxPool2D(), (7, 7, 4), (3, 3, 4)),
        (MaxPool2D(padding="same"), (7, 7, 4), (4, 4, 4)),
        (AvgPool2D(3, strides=1), (5, 6, 2), (3, 4, 2)),
        (GlobalAveragePooling2D(), (5, 6, 2), (2,)),
        (Flatten(), (5, 6, 2), (60,)),
        (Dense(7), (4, 5, 3), (4, 5, 7)),
        (BatchNorm(), (5, 6, 2), (5, 6, 2)),
    ],
)
def test_output_shapes(layer: Layer, in_shape: tuple, out_shape: tuple) -> None:
    assert built(layer, in_shape).output_shape == out_shape
    assert layer(Tensor(np.zeros((2, *in_shape), np.float32))).shape == (2, *out_shape)


def test_batchnorm_moving_statistics_follow_keras() -> None:
    layer = built(BatchNorm(momentum=0.9), (3,))
    x = rand(10, 3).astype(np.float32) * 2 + 5
    layer(Tensor(x), training=True)
    mean, var = x.mean(axis=0), x.var(axis=0)  # Keras updates with the biased variance
    np.testing.assert_allclose(layer.params["moving_mean"].data, 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(layer.params["moving_variance"].data, 0.9 + 0.1 * var, rtol=1e-5)
    out = layer(Tensor(x), training=False).data
    mm, mv = layer.params["moving_mean"].data, layer.params["moving_variance"].data
    np.testing.assert_allclose(out, (x - mm) / np.sqrt(mv + 1e-3), rtol=1e-4, atol=1e-5)


def test_dropout_masks_and_scales_only_in_training() -> None:
    layer = built(Dropout(0.25), (1000,))
    layer.set_rng(np.random.default_rng(0))
    x = Tensor(np.ones((20, 1000), np.float32))
    assert layer(x, training=False) is x
    y = layer(x, training=True).data
    assert set(np.unique(y)) == {0.0, np.float32(1 / 0.75)}
    assert abs((y == 0).mean() - 0.25) < 0.01
    layer.set_rng(np.random.default_rng(0))
    np.testing.assert_array_equal(layer(x, training=True).data, y)  # same generator, same mask


def test_dropout_with_its_own_seed_ignores_the_model_rng() -> None:
    a, b = built(Dropout(0.5, seed=1), (50,)), built(Dropout(0.5, seed=1), (50,))
    b.set_rng(np.random.default_rng(99))
    x = Tensor(np.ones((4, 50), np.float32))
    np.testing.assert_array_equal(a(x, training=True).data, b(x, training=True).data)


# -- configs ----------------------------------------------------------------------------------

CONFIG_CASES = [
    (Dense(5, activation="relu", use_bias=False, kernel_initializer="he_normal",
           kernel_regularizer={"l2": 1e-4}, bias_regularizer=L1L2(l1=0.1), name="d"), (4,)),
    (Conv2D(3, (2, 3), strides=2, padding="same", activation="tanh",
            bias_initializer="ones", kernel_regularizer={"l1": 0.01, "l2": 0.02}), (6, 6, 2)),
    (Conv2D(3, 3, padding=((1, 0), (2, 1))), (6, 6, 2)),
    (MaxPool2D(3, strides=1, padding="same", name="mp"), (6, 6, 2)),
    (AvgPool2D((2, 3)), (6, 6, 2)),
    (GlobalAveragePooling2D(), (6, 6, 2)),
    (Dropout(0.3, seed=4), (6,)),
    (BatchNorm(momentum=0.9, epsilon=1e-5, center=False, gamma_initializer="random_normal"), (6,)),
    (Flatten(), (2, 3)),
    (Activation("sigmoid"), (6,)),
]


@pytest.mark.parametrize(("layer", "shape"), CONFIG_CASES,
                         ids=[type(layer).__name__ for layer, _ in CONFIG_CASES])
def test_config_round_trip(layer: Layer, shape: tuple[int, ...]) -> None:
    config = layer.get_config()
    # the config is exactly the constructor's arguments
    assert set(config) == set(inspect.signature(type(layer).__init__).parameters) - {"self"}
    again = type(layer)(**config)
    assert again.get_config() == config
    # ... and survives JSON, as it does in a checkpoint
    from_json = type(layer)(**json.loads(json.dumps(config)))
    assert from_json.get_config() == config
    out = built(layer, shape).output_shape
    assert built(again, shape).output_shape == out
    assert again.count_params() == layer.count_params()


def test_layers_registry() -> None:
    assert set(LAYERS) == {"Dense", "Conv2D", "MaxPool2D", "AvgPool2D", "GlobalAveragePooling2D",
                           "Dropout", "SpatialDropout2D", "BatchNorm", "Flatten", "Activation",
                           "RandomFlip",
                           "RandomTranslation", "RandomRotation", "RandomZoom", "RandomCrop",
                           "RandomContrast", "RandomBrightness", "GaussianNoise", "Residual"}
    assert all(issubclass(cls, Layer) and cls.__name__ == key for key, cls in LAYERS.items())


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Dense(0), "units"),
        (lambda: Dense(3, activation="relux"), "unknown activation"),
        (lambda: Dense(3, kernel_initializer="glorot"), "unknown initializer"),
        (lambda: Dense(3, kernel_regularizer={"l3": 1.0}), "l3"),
        (lambda: Conv2D(3, 0), "kernel_size"),
        (lambda: Conv2D(3, (3, 3, 3)), "kernel_size"),
        (lambda: Conv2D(3, 3, padding="full"), "padding"),
        (lambda: MaxPool2D(padding=1), "padding"),
        (lambda: Dropout(1.0), "rate"),
        (lambda: BatchNorm(momentum=1.5), "momentum"),
    ],
)
def test_bad_arguments_raise_value_error(make, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


# -- initializers -----------------------------------------------------------------------------


def test_compute_fans_follow_keras() -> None:
    assert compute_fans((7,)) == (7, 7)
    assert compute_fans((30, 20)) == (30, 20)
    assert compute_fans((3, 3, 16, 32)) == (144, 288)


FAN_IN, FAN_OUT = 400, 600
TRUNC = 0.87962566103423978


@pytest.mark.parametrize(
    ("name", "kind", "scale"),
    [
        ("glorot_uniform", "uniform", math.sqrt(6 / (FAN_IN + FAN_OUT))),
        ("he_uniform", "uniform", math.sqrt(6 / FAN_IN)),
        ("lecun_uniform", "uniform", math.sqrt(3 / FAN_IN)),
        ("random_uniform", "uniform", 0.05),
        ("glorot_normal", "truncated", math.sqrt(2 / (FAN_IN + FAN_OUT))),
        ("he_normal", "truncated", math.sqrt(2 / FAN_IN)),
        ("lecun_normal", "truncated", math.sqrt(1 / FAN_IN)),
        ("random_normal", "normal", 0.05),
    ],
)
def test_initializer_statistics(name: str, kind: str, scale: float) -> None:
    w = get_initializer(name)((FAN_IN, FAN_OUT), np.random.default_rng(0))
    assert w.shape == (FAN_IN, FAN_OUT) and w.dtype == np.float32
    assert abs(w.mean()) < 0.01 * scale
    if kind == "uniform":  # scale is the limit
        assert -scale <= w.min() < -0.99 * scale and 0.99 * scale < w.max() <= scale
        assert w.std() == pytest.approx(scale / math.sqrt(3), rel=0.01)
    elif kind == "truncated":  # scale is the target stddev; cut at 2 stddevs of the raw normal
        assert w.std() == pytest.approx(scale, rel=0.01)
        assert np.abs(w).max() <= 2 * scale / TRUNC * (1 + 1e-6)
    else:
        assert w.std() == pytest.approx(scale, rel=0.01)
        assert np.abs(w).max() > 4 * scale  # not truncated


def test_conv_kernel_uses_receptive_field_fans() -> None:
    w = get_initializer("he_uniform")((5, 5, 8, 16), np.random.default_rng(0))
    limit = math.sqrt(6 / (5 * 5 * 8))
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.99 * limit


@pytest.mark.parametrize("shape", [(64, 32), (32, 64), (3, 3, 4, 8), (16, 16)])
def test_orthogonal_is_orthogonal(shape: tuple[int, ...]) -> None:
    w = get_initializer("orthogonal")(shape, np.random.default_rng(3)).astype(np.float64)
    m = w.reshape(-1, shape[-1])
    gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
    np.testing.assert_allclose(gram, np.eye(gram.shape[0]), atol=1e-5)


@pytest.mark.parametrize("name", INITIALIZERS)
def test_initializers_are_deterministic_per_seed(name: str) -> None:
    init = get_initializer(name)
    a = init((6, 5), np.random.default_rng(11))
    np.testing.assert_array_equal(a, init((6, 5), np.random.default_rng(11)))
    if name not in ("zeros", "ones", "constant", "identity"):  # these draw nothing
        assert not np.array_equal(a, init((6, 5), np.random.default_rng(12)))


def test_initializer_lookup() -> None:
    assert len(INITIALIZERS) == 15
    assert get_initializer("zeros")((2,), np.random.default_rng(0)).tolist() == [0.0, 0.0]
    assert get_initializer("ones")((2,), np.random.default_rng(0)).tolist() == [1.0, 1.0]

    def custom(shape, rng):
        return np.full(shape, 3.0)

    assert get_initializer(custom) is custom
    with pytest.raises(ValueError, match="glorot_uniform.*he_normal"):
        get_initializer("xavier")


# -- regularizers -----------------------------------------------------------------------------


def test_l1l2_value_gradient_and_config() -> None:
    w = Tensor(np.array([[1.0, -2.0], [0.5, 0.0]]), requires_grad=True)
    penalty = L1L2(l1=0.1, l2=0.01)(w)
    assert penalty.item() == pytest.approx(0.1 * 3.5 + 0.01 * 5.25)
    check_grad(lambda t: L1L2(l1=0.1, l2=0.01)(t), [np.array([[1.0, -2.0], [0.5, 0.3]])])
    assert L1L2().get_config() == {"l1": 0.0, "l2": 0.0}
    assert L1L2()(w).item() == 0.0
    assert get_regularizer(None) is None
    assert get_regularizer({"l2": 0.5}) == L1L2(l2=0.5)
    reg = L1L2(l1=1.0)
    assert get_regularizer(reg) is reg
    with pytest.raises(ValueError, match="l1"):
        L1L2(l1=-1.0)
    assert get_regularizer("l2") == L1L2(l2=0.01)  # Keras's shorthand
    with pytest.raises(ValueError):
        get_regularizer("l3")


def test_model_regularization_loss() -> None:
    model = Sequential([Dense(3, kernel_regularizer={"l2": 0.01}, bias_initializer="ones",
                              bias_regularizer={"l1": 0.1}),
                        Dense(2), Dense(2, kernel_regularizer={"l1": 0.5, "l2": 0.5})], (4,))
    model.build(0)
    k1, k3 = model.layers[0].params["kernel"].data, model.layers[2].params["kernel"].data
    want = 0.01 * (k1**2).sum() + 0.1 * 3 + 0.5 * np.abs(k3).sum() + 0.5 * (k3**2).sum()
    loss = model.regularization_loss()
    assert loss.item() == pytest.approx(float(want), rel=1e-5)
    loss.backward()
    np.testing.assert_allclose(model.layers[0].params["kernel"].grad, 0.02 * k1, rtol=1e-5)
    assert model.layers[1].params["kernel"].grad is None
    plain = Sequential([Dense(2)], (3,)).build(0)
    assert plain.regularization_loss() is None


# -- Sequential -------------------------------------------------------------------------------


def mlp() -> Sequential:
    return Sequential([Dense(256, "relu"), Dense(128, "relu"), Dense(10, "softmax")], (784,))


def cnn() -> Sequential:
    return Sequential([
        Conv2D(32, 3, padding="same", activation="relu"), BatchNorm(), MaxPool2D(),
        Conv2D(64, 3, padding="same", activation="relu"), BatchNorm(), MaxPool2D(),
        Flatten(), Dense(128, "relu"), Dense(10, "softmax"),
    ], (28, 28, 1))


def test_parameter_counts_match_keras() -> None:
    # Dense 784-256-128-10: 784*256+256 + 256*128+128 + 128*10+10 = 200,960 + 32,896 + 1,290
    assert mlp().build(0).count_params() == 235_146
    # conv 3*3*1*32+32 = 320; bn 4*32 = 128; conv 3*3*32*64+64 = 18,496; bn 4*64 = 256;
    # 28 -> 14 -> 7, flatten 7*7*64 = 3,136; dense 3,136*128+128 = 401,536; dense 128*10+10 = 1,290
    # total 320+128+18,496+256+401,536+1,290 = 422,026, of which 2*32+2*64 = 192 non-trainable
    model = cnn().build(0)
    assert [r["params"] for r in model.summary_rows()] == [320, 128, 0, 18_496, 256, 0, 0,
                                                          401_536, 1_290]
    assert model.count_params() == 422_026
    assert sum(w.size for w in model.non_trainable_weights) == 192
    assert sum(w.size for w in model.trainable_weights) == 422_026 - 192
    # Keras's "Simple MNIST convnet" example: 34,826 parameters
    keras_example = Sequential([
        Conv2D(32, 3, activation="relu"), MaxPool2D(2), Conv2D(64, 3, activation="relu"),
        MaxPool2D(2), Flatten(), Dropout(0.5), Dense(10, activation="softmax"),
    ], (28, 28, 1)).build(0)
    assert keras_example.count_params() == 34_826
    assert keras_example.output_shape == (10,)
    gap = Sequential([Conv2D(16, 5, use_bias=False), GlobalAveragePooling2D(), Dense(3)],
                     (10, 10, 3)).build(0)
    assert gap.count_params() == 5 * 5 * 3 * 16 + 16 * 3 + 3


def test_summary_rows_and_macs() -> None:
    rows = cnn().build(0).summary_rows()
    assert rows[0] == {"name": "conv2d", "type": "Conv2D", "output_shape": (28, 28, 32),
                       "params": 320, "trainable_params": 320, "macs": 28 * 28 * 9 * 32,
                       "activation_bytes": 4 * 28 * 28 * 32, "depth": 0}
    assert rows[1]["trainable_params"] == 64 and rows[1]["macs"] == 28 * 28 * 32
    assert rows[2]["name"] == "max_pooling2d" and rows[2]["macs"] == 14 * 14 * 32 * 4
    assert rows[3]["macs"] == 14 * 14 * 9 * 32 * 64
    assert rows[6]["macs"] == 0
    assert rows[7]["macs"] == 3136 * 128


def test_unique_keras_style_names() -> None:
    layers = [Conv2D(2, 1), BatchNorm(), MaxPool2D(1), AvgPool2D(1), Conv2D(2, 1),
              Activation("relu"), GlobalAveragePooling2D(), Dropout(0.1), Dense(2, name="dense_1"),
              Dense(2), Dense(2), Flatten(name="top")]
    Sequential(layers, (3, 3, 1))
    assert [layer.name for layer in layers] == [
        "conv2d", "batch_normalization", "max_pooling2d", "average_pooling2d", "conv2d_1",
        "activation", "global_average_pooling2d", "dropout", "dense_1", "dense", "dense_2", "top",
    ]
    with pytest.raises(ModelError, match="'x' is used by an earlier layer"):
        Sequential([Dense(2, name="x"), Dense(2, name="x")], (3,))


@pytest.mark.parametrize(
    ("layers", "input_shape", "message"),
    [
        ([Conv2D(64, 3, padding="same"), MaxPool2D(), MaxPool2D(), Conv2D(8, 5)], (12, 12, 1),
         "layer 3 (Conv2D): kernel (5, 5) is larger than its input (3, 3, 64)"),
        ([Conv2D(8, 3)], (784,),
         "layer 0 (Conv2D): expects an image input (height, width, channels), got (784,)"),
        ([Dense(10), Flatten()], (5,), "layer 1 (Flatten): the input (10,) is already flat"),
        ([Dense(4), MaxPool2D()], (5,),
         "layer 1 (MaxPool2D): expects an image input (height, width, channels), got (4,)"),
        ([Conv2D(4, 3), AvgPool2D(3)], (4, 4, 1),
         "layer 1 (AvgPool2D): pool (3, 3) is larger than its input (2, 2, 4)"),
        ([Conv2D(4, 5, padding=1)], (2, 2, 1),
         "layer 0 (Conv2D): kernel (5, 5) is larger than its input (2, 2, 1) padded to (4, 4)"),
        ([Flatten(), GlobalAveragePooling2D()], (2, 2, 1),
         "layer 1 (GlobalAveragePooling2D): expects an image input (height, width, channels), "
         "got (4,)"),
        ([Conv2D(4, 1)], (0, 3, 1), "layer 0 (Conv2D): input (0, 3, 1) has an empty axis"),
    ],
)
def test_shape_errors_name_layer_and_shapes(layers, input_shape, message) -> None:
    with pytest.raises(ShapeError) as info:
        Sequential(layers, input_shape).build(0)
    assert str(info.value) == message
    assert isinstance(info.value, DlcliError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize(("layers", "index", "kind", "problem"), [
    ([Conv2D(64, 3, padding="same"), MaxPool2D(), MaxPool2D(), Conv2D(8, 5)], 3, "Conv2D",
     "kernel (5, 5) is larger than its input (3, 3, 64)"),
    ([Dense(10), Flatten(), Dense(3)], 1, "Flatten", "the input (10,) is already flat"),
    # inside a block: the model's index is the block's, the block names its own layer
    ([Dense(4), Residual([Dense(4), Flatten()])], 1, "Residual",
     "block layer 1 (Flatten): the input (4,) is already flat"),
])
def test_shape_errors_carry_the_failing_layer(layers, index, kind, problem) -> None:
    with pytest.raises(ShapeError) as info:
        Sequential(layers, (5,) if kind != "Conv2D" else (12, 12, 1)).build(0)
    err = info.value
    assert (err.layer_index, err.layer_type, err.problem) == (index, kind, problem)
    assert str(err) == f"layer {index} ({kind}): {problem}"


def test_dense_on_a_non_flat_input_acts_on_the_last_axis() -> None:
    model = Sequential([Dense(7)], (4, 5, 3)).build(0)
    assert model.output_shape == (4, 5, 7)
    assert model.count_params() == 3 * 7 + 7
    assert model.summary_rows()[0]["macs"] == 4 * 5 * 3 * 7


def test_same_seed_same_weights_and_different_seed_different() -> None:
    a, b, c = cnn().build(5), cnn().build(5), cnn().build(6)
    wa, wb, wc = a.get_weights(), b.get_weights(), c.get_weights()
    assert list(wa) == list(wb)
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    assert not np.array_equal(wa["conv2d/kernel"], wc["conv2d/kernel"])
    assert all(v.dtype == np.float32 for v in wa.values())


def test_get_set_weights_round_trip() -> None:
    src, dst = cnn().build(1), cnn().build(2)
    src.layers[1].params["moving_mean"].data[:] = 0.5  # non-trainable weights travel too
    kernel = dst.layers[0].params["kernel"]
    dst.set_weights(src.get_weights())
    assert dst.layers[0].params["kernel"] is kernel  # updated in place
    x = Tensor(rand(2, 28, 28, 1, seed=3).astype(np.float32))
    np.testing.assert_array_equal(src(x).data, dst(x).data)
    weights = src.get_weights()
    weights["conv2d/kernel"][:] = 0  # a copy: the model is untouched
    assert np.abs(src.layers[0].params["kernel"].data).sum() > 0
    assert list(weights)[:4] == ["conv2d/kernel", "conv2d/bias", "batch_normalization/gamma",
                                 "batch_normalization/beta"]


def test_set_weights_names_the_mismatch() -> None:
    model = mlp().build(0)
    weights = model.get_weights()
    del weights["dense_1/bias"]
    weights["dense_9/bias"] = np.zeros(3)
    with pytest.raises(ValueError, match="missing dense_1/bias; unexpected dense_9/bias"):
        model.set_weights(weights)
    weights = model.get_weights()
    weights["dense/kernel"] = np.zeros((784, 255))
    with pytest.raises(ValueError, match=r"dense/kernel has shape \(784, 255\) .* \(784, 256\)"):
        model.set_weights(weights)


def test_logits_skip_only_the_last_softmax() -> None:
    model = mlp().build(0)
    x = Tensor(rand(3, 784).astype(np.float32))
    logits = model.logits(x).data
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    np.testing.assert_allclose(model(x).data, probs, rtol=1e-5, atol=1e-7)
    assert model.output_activation == "softmax"
    x4 = x.data[:, :4]
    act = Sequential([Dense(3), Activation("sigmoid")], (4,)).build(0)
    np.testing.assert_allclose(act.logits(x4).data, act.layers[0](Tensor(x4)).data)
    relu = Sequential([Dense(3, activation="relu")], (4,)).build(0)
    np.testing.assert_array_equal(relu.logits(x4).data, relu(x4).data)


def test_model_gradients_reach_every_trainable_weight() -> None:
    model = cnn().build(0)
    out = model.logits(Tensor(rand(2, 28, 28, 1).astype(np.float32)), training=True)
    out.sum().backward()
    assert all(w.grad is not None and w.grad.shape == w.shape for w in model.trainable_weights)
    assert all(w.grad is None for w in model.non_trainable_weights)
    assert len(model.weights) == len(model.trainable_weights) + len(model.non_trainable_weights)


def test_dropout_uses_the_model_rng() -> None:
    def run(model: Sequential) -> np.ndarray:
        return model(np.ones((4, 20), np.float32), training=True).data

    make = lambda: Sequential([Dense(20), Dropout(0.5)], (20,)).build(3)  # noqa: E731
    a, b = make(), make()
    np.testing.assert_array_equal(run(a), run(b))  # same seed, same masks
    first = run(a)
    assert not np.array_equal(first, run(a))  # the generator moves on
    a.set_rng(np.random.default_rng(8))
    b.set_rng(np.random.default_rng(8))
    np.testing.assert_array_equal(run(a), run(b))
    assert a.layers[1].rng is a.rng
    np.testing.assert_array_equal(a(np.ones((4, 20), np.float32)).data,
                                  a.layers[0](Tensor(np.ones((4, 20), np.float32))).data)


def test_to_numpy_keeps_the_weights() -> None:
    model = mlp().build(0)
    before = model.get_weights()
    model.to(np)
    model.to("cpu")
    assert all(np.array_equal(before[k], v) for k, v in model.get_weights().items())


def test_model_used_before_build() -> None:
    with pytest.raises(RuntimeError, match="before build"):
        mlp()(np.zeros((1, 784), np.float32))


def test_model_on_gpu_matches_cpu() -> None:
    cupy = pytest.importorskip("cupy")
    from dlcli.core.backend import gpu_available

    if not gpu_available():
        pytest.skip("no GPU")
    model = Sequential([Conv2D(4, 3, padding="same"), BatchNorm(), MaxPool2D(), Flatten(),
                        Dropout(0.5), Dense(3, "softmax")], (6, 6, 2)).build(0)
    x = rand(2, 6, 6, 2).astype(np.float32)
    want = model(x).data
    model.to(cupy)
    got = model(cupy.asarray(x))
    np.testing.assert_allclose(cupy.asnumpy(got.data), want, rtol=1e-4, atol=1e-5)
    assert isinstance(model(cupy.asarray(x), training=True).data, cupy.ndarray)
    model.to(np)
    assert isinstance(model.weights[0].data, np.ndarray)


def _ops_in_graph(y: Tensor) -> list[str]:
    names, stack, seen = [], [y], set()
    while stack:
        t = stack.pop()
        if id(t) in seen or t._op is None:
            continue
        seen.add(id(t))
        names.append(type(t._op).__name__)
        stack.extend(t._op.inputs)
    return names


def test_relu_before_max_pool_runs_inside_the_pool_with_the_same_numbers():
    layers = [Conv2D(4, 3, padding="same", activation="relu"), MaxPool2D(2),
              BatchNorm(), Activation("relu"), MaxPool2D(2, padding="same"),
              Conv2D(3, 1, activation="relu"), Flatten(), Dense(5, "relu"), Dense(2)]
    model = Sequential(layers, (9, 8, 2)).build(3)
    x = np.random.default_rng(4).standard_normal((3, 9, 8, 2)).astype(np.float32)
    x[0, :5, :5] = 0.0  # flat regions: ties inside the pools

    def run(fused: bool) -> tuple[np.ndarray, list[np.ndarray], list[str]]:
        for w in model.trainable_weights:
            w.grad = None
        if fused:
            y = model(Tensor(x), training=True)
        else:  # one layer after the other, each with its own ReLU
            y = Tensor(x)
            for layer in model.layers:
                y = layer(y, training=True)
        graph = _ops_in_graph(y)
        (y * y).sum().backward()
        return y.data, [w.grad for w in model.trainable_weights], graph

    y_plain, g_plain, ops_plain = run(False)
    y_fused, g_fused, ops_fused = run(True)
    np.testing.assert_array_equal(y_plain, y_fused)
    for a, b in zip(g_plain, g_fused, strict=True):
        np.testing.assert_array_equal(a, b)
    assert ops_plain.count("ReLU") == 4 and ops_fused.count("ReLU") == 2  # two went into pools
