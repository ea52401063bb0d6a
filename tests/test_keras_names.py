"""Keras 3 names: regularizer shorthands, the new initializers, dilated Conv2D, SpatialDropout2D
and Dropout(noise_shape), each against Keras's formula, through the config, summary and ONNX."""

from __future__ import annotations

import inspect
import json
import math
import textwrap

import numpy as np
import pytest

from dlcli.config import load_config_text
from dlcli.config.errors import ConfigError
from dlcli.config.schema import resolved_yaml
from dlcli.core.gradcheck import check_forward, check_grad
from dlcli.core.ops import norm
from dlcli.core.ops.conv import conv2d
from dlcli.core.ops.norm import dropout
from dlcli.core.tensor import Tensor
from dlcli.nn.from_config import build_model
from dlcli.nn.initializers import compute_fans, get_initializer
from dlcli.nn.layers import Conv2D, Dense, Dropout, Flatten, Layer, ShapeError, SpatialDropout2D
from dlcli.nn.regularizers import L1L2, get_regularizer
from dlcli.nn.sequential import Sequential
from dlcli.nn.summary import summary_dict

TRUNC = 0.87962566103423978  # stddev of a standard normal cut at [-2, 2]


def config(layers: str, input_shape: str = "[9, 8, 2]", seed: int = 42) -> str:
    return textwrap.dedent(f"""\
        seed: {seed}
        data: {{dataset: moons}}
        model:
          input_shape: {input_shape}
          layers:
        """) + textwrap.indent(textwrap.dedent(layers), "    ")


def load(text: str):
    return load_config_text(text, [], "t.yaml")


def errors(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        build_model(load(text))
    return str(info.value)


def weights_of(model: Sequential) -> dict[str, np.ndarray]:
    return {f"{layer.name}/{k}": w.data for layer in model.walk() for k, w in layer.params.items()}


# -- 1. regularizer shorthands ----------------------------------------------------------------
W = np.array([[1.0, -2.0, 0.5], [0.0, -0.25, 3.0]])


@pytest.mark.parametrize(("name", "want"), [
    ("l1", 0.01 * np.abs(W).sum()),
    ("l2", 0.01 * (W**2).sum()),
    ("l1_l2", 0.01 * np.abs(W).sum() + 0.01 * (W**2).sum()),
])  # fmt: skip
def test_regularizer_shorthands_use_keras_default_factor(name: str, want: float) -> None:
    reg = get_regularizer(name)
    assert reg(Tensor(W)).item() == pytest.approx(want, rel=1e-12)
    assert reg == L1L2(**{k: 0.01 for k in name.split("_")})  # both factors 0.01 for l1_l2
    # a layer stores the factors, so Layer(**get_config()) gives the same penalty back
    assert get_regularizer(reg.get_config()) == reg


def test_regularizer_shorthand_and_mapping_in_a_config() -> None:
    text = config("""\
        - {type: Conv2D, filters: 3, kernel_size: 3, kernel_regularizer: l2, bias_regularizer: l1}
        - {type: Flatten}
        - {type: Dense, units: 2, kernel_regularizer: l1_l2}
        - {type: Dense, units: 2, kernel_regularizer: {l1: 0.5}}
        """)
    cfg = load(text)
    model = build_model(cfg)
    conv, _, d1, d2 = model.layers
    k, b = conv.params["kernel"].data, conv.params["bias"].data + 0.0
    k1, k2 = d1.params["kernel"].data, d2.params["kernel"].data
    want = (0.01 * (k.astype(np.float64) ** 2).sum() + 0.01 * np.abs(b).sum()
            + 0.01 * (np.abs(k1).sum() + (k1.astype(np.float64) ** 2).sum())
            + 0.5 * np.abs(k2).sum())
    assert model.regularization_loss().item() == pytest.approx(float(want), rel=1e-5)
    assert conv.get_config()["kernel_regularizer"] == {"l1": 0.0, "l2": 0.01}
    # the resolved config keeps the shorthand and loads back to the same model
    again = load(resolved_yaml(cfg))
    assert again.model.layers[0].kernel_regularizer == "l2"
    assert again.model.layers[3].kernel_regularizer.l1 == 0.5


def test_unknown_regularizer_shorthand_is_a_config_error() -> None:
    msg = errors(config("- {type: Dense, units: 2, kernel_regularizer: l3}", "[4]"))
    assert "kernel_regularizer: unknown regularizer 'l3'" in msg and "l1_l2" in msg
    with pytest.raises(ValueError, match="unknown regularizer 'L2'"):
        get_regularizer("L2")  # Keras's names are lower case


# -- 2. initializers ---------------------------------------------------------------------------
def draw(spec, shape, seed: int = 0) -> np.ndarray:
    w = get_initializer(spec)(shape, np.random.default_rng(seed))
    assert w.shape == tuple(shape) and w.dtype == np.float32
    return w


def test_constant() -> None:
    assert np.all(draw("constant", (3, 4)) == 0.0)  # Keras's default value
    assert np.all(draw({"type": "constant", "value": -1.5}, (2, 3, 4)) == -1.5)


@pytest.mark.parametrize(("mean", "stddev"), [(0.0, 0.05), (1.0, 0.3)])
def test_truncated_normal(mean: float, stddev: float) -> None:
    spec = "truncated_normal" if mean == 0 else {"type": "truncated_normal", "mean": mean,
                                                  "stddev": stddev}
    w = draw(spec, (500, 400)).astype(np.float64)
    # values beyond two stddev are redrawn, which shrinks the spread by TRUNC
    assert np.abs(w - mean).max() <= 2 * stddev * (1 + 1e-6)
    assert np.abs(w - mean).max() > 1.99 * stddev
    assert w.mean() == pytest.approx(mean, abs=0.01 * stddev)
    assert w.std() == pytest.approx(stddev * TRUNC, rel=0.01)


SHAPE = (5, 5, 40, 60)  # fan_in 1000, fan_out 1500: receptive field times channels


@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
@pytest.mark.parametrize("distribution", ["truncated_normal", "untruncated_normal", "uniform"])
def test_variance_scaling(mode: str, distribution: str) -> None:
    scale = 2.5
    fan_in, fan_out = compute_fans(SHAPE)
    assert (fan_in, fan_out) == (1000, 1500)
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    std = math.sqrt(scale / n)
    w = draw({"type": "variance_scaling", "scale": scale, "mode": mode,
              "distribution": distribution}, SHAPE).astype(np.float64)
    assert abs(w.mean()) < 0.02 * std
    assert w.std() == pytest.approx(std, rel=0.015)  # every distribution has variance scale / n
    if distribution == "truncated_normal":  # Keras: stddev sqrt(scale / n) / TRUNC, cut at 2
        assert np.abs(w).max() <= 2 * std / TRUNC * (1 + 1e-6)
    elif distribution == "uniform":
        limit = math.sqrt(3 * scale / n)
        assert np.abs(w).max() <= limit and np.abs(w).max() > 0.999 * limit
    else:
        assert np.abs(w).max() > 2 * std / TRUNC * 1.5  # not truncated


def test_variance_scaling_defaults_and_the_named_variants_agree() -> None:
    """Keras's defaults (1.0, fan_in, truncated_normal) are lecun_normal, draw for draw."""
    shape = (3, 3, 8, 16)
    np.testing.assert_array_equal(draw("variance_scaling", shape), draw("lecun_normal", shape))
    np.testing.assert_array_equal(
        draw({"type": "variance_scaling", "distribution": "normal"}, shape),  # Keras's alias
        draw("lecun_normal", shape))
    np.testing.assert_array_equal(
        draw({"type": "variance_scaling", "scale": 1.0, "mode": "fan_avg",
              "distribution": "uniform"}, shape), draw("glorot_uniform", shape))
    np.testing.assert_array_equal(
        draw({"type": "variance_scaling", "scale": 2.0}, shape), draw("he_normal", shape))


def test_existing_initializers_draw_the_same_numbers() -> None:
    """Exact reruns: the named initializers are the plain numpy draws they always were."""
    shape = (7, 5)
    rng = np.random.default_rng(0)
    limit = math.sqrt(6 / 12)
    np.testing.assert_array_equal(draw("glorot_uniform", shape),
                                  rng.uniform(-limit, limit, size=shape).astype(np.float32))
    np.testing.assert_array_equal(draw("random_normal", shape), np.random.default_rng(0).normal(
        0.0, 0.05, size=shape).astype(np.float32))
    np.testing.assert_array_equal(draw({"type": "random_normal"}, shape),
                                  draw("random_normal", shape))
    np.testing.assert_array_equal(draw({"type": "orthogonal", "gain": 1.0}, shape),
                                  draw("orthogonal", shape))
    np.testing.assert_allclose(draw({"type": "orthogonal", "gain": 3.0}, shape),
                               3 * draw("orthogonal", shape), rtol=1e-6)
    u = draw({"type": "random_uniform", "minval": 2.0, "maxval": 3.0}, (200, 100))
    assert 2.0 <= u.min() < 2.01 and 2.99 < u.max() <= 3.0


@pytest.mark.parametrize("shape", [(4, 4), (3, 5), (6, 2)])
def test_identity(shape: tuple[int, int]) -> None:
    np.testing.assert_array_equal(draw("identity", shape), np.eye(*shape))
    np.testing.assert_array_equal(draw({"type": "identity", "gain": 2.0}, shape),
                                  2 * np.eye(*shape))


@pytest.mark.parametrize("shape", [(3,), (3, 3, 2, 2)])
def test_identity_is_2d_only(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="2-D"):
        draw("identity", shape)


def test_bad_initializer_arguments() -> None:
    with pytest.raises(ValueError, match="takes value.*vlue"):
        get_initializer({"type": "constant", "vlue": 1.0})
    with pytest.raises(ValueError, match="mode"):
        get_initializer({"type": "variance_scaling", "mode": "fan_sum"})
    with pytest.raises(ValueError, match="scale"):
        get_initializer({"type": "variance_scaling", "scale": 0.0})
    with pytest.raises(ValueError, match="unknown initializer"):
        get_initializer({"type": "xavier"})


def test_initializers_in_a_config() -> None:
    text = config("""\
        - {type: Conv2D, filters: 6, kernel_size: 3, bias_initializer: {type: constant, value: 0.5},
           kernel_initializer: {type: variance_scaling, scale: 2.0, mode: fan_out,
                                distribution: uniform}}
        - {type: BatchNorm, gamma_initializer: {type: constant, value: 0.25}}
        - {type: Flatten}
        - {type: Dense, units: 5, kernel_initializer: {type: truncated_normal, stddev: 0.2}}
        - {type: Dense, units: 5, kernel_initializer: identity}
        - {type: Dense, units: 5, kernel_initializer: {type: identity, gain: 0.5}}
        """)
    cfg = load(text)
    model = build_model(cfg)
    conv, bn, _, d1, d2, d3 = model.layers
    limit = math.sqrt(3 * 2.0 / (3 * 3 * 6))  # fan_out: receptive field times filters
    k = conv.params["kernel"].data
    assert np.abs(k).max() <= limit and np.abs(k).max() > 0.8 * limit
    assert np.all(conv.params["bias"].data == 0.5)
    assert np.all(bn.params["gamma"].data == 0.25)
    assert np.abs(d1.params["kernel"].data).max() <= 0.4 * (1 + 1e-6)
    np.testing.assert_array_equal(d2.params["kernel"].data, np.eye(5))
    np.testing.assert_array_equal(d3.params["kernel"].data, 0.5 * np.eye(5))
    # the resolved config (what a checkpoint keeps) builds the same weights again
    again = build_model(load(resolved_yaml(cfg)))
    for key, value in weights_of(model).items():
        np.testing.assert_array_equal(weights_of(again)[key], value)
    # and each layer's own config rebuilds it
    for layer in model.layers:
        clone = type(layer)(**json.loads(json.dumps(layer.get_config())))
        assert clone.get_config() == layer.get_config()


@pytest.mark.parametrize(("layer", "message"), [
    ("{type: Conv2D, filters: 2, kernel_size: 3, kernel_initializer: identity}",
     "kernel_initializer: the identity initializer makes 2-D matrices only; a Conv2D kernel"),
    ("{type: Conv2D, filters: 2, kernel_size: 3, bias_initializer: {type: identity}}",
     "bias_initializer: the identity initializer makes 2-D matrices only; a bias"),
    ("{type: BatchNorm, beta_initializer: identity}", "beta_initializer: the identity"),
    ("{type: Conv2D, filters: 2, kernel_size: 3, kernel_initializer: {type: he_normall}}",
     "unknown initializer 'he_normall'"),
    ("{type: Conv2D, filters: 2, kernel_size: 3, kernel_initializer: {scale: 2.0}}",
     "an initializer mapping needs a type"),
    ("{type: Conv2D, filters: 2, kernel_size: 3, kernel_initializer: {type: constant, vale: 1}}",
     "kernel_initializer.vale: unknown key 'vale'"),
    ("{type: Conv2D, filters: 2, kernel_size: 3, kernel_initializer: {type: glorot_uniform, "
     "seed: 3}}", "unknown key 'seed'"),
    ("{type: Conv2D, filters: 2, kernel_size: 3, kernel_initializer: {type: variance_scaling, "
     "mode: fan}}", "kernel_initializer.mode: unknown mode 'fan'"),
])  # fmt: skip
def test_initializer_config_errors(layer: str, message: str) -> None:
    assert message in errors(config(f"- {layer}"))


# -- 3. dilated Conv2D --------------------------------------------------------------------------
def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def dilated_reference(x, W, b, strides, dilation, padding):
    """Direct loops; 'same' padding from TF's formula on the dilated extent (k - 1) * d + 1."""
    (sh, sw), (dh, dw), (kh, kw) = _pair(strides), _pair(dilation), W.shape[:2]
    eh, ew = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    h, w = x.shape[1:3]
    if padding == "valid":
        pads = ((0, 0), (0, 0))
    elif padding == "same":
        pads = []
        for n, e, s in ((h, eh, sh), (w, ew, sw)):
            total = max((math.ceil(n / s) - 1) * s + e - n, 0)
            pads.append((total // 2, total - total // 2))
    elif isinstance(padding, int):
        pads = ((padding, padding), (padding, padding))
    else:
        pads = padding
    xpad = np.pad(x, ((0, 0), *pads, (0, 0)))
    ho, wo = (xpad.shape[1] - eh) // sh + 1, (xpad.shape[2] - ew) // sw + 1
    y = np.zeros((x.shape[0], ho, wo, W.shape[3]))
    for n in range(x.shape[0]):
        for i in range(ho):
            for j in range(wo):
                taps = xpad[n, i * sh : i * sh + eh : dh, j * sw : j * sw + ew : dw, :]
                for o in range(W.shape[3]):
                    y[n, i, j, o] = np.sum(taps * W[..., o]) + (0.0 if b is None else b[o])
    return y


DILATED = [  # (kernel, strides, dilation, padding, cin); the op takes strides with dilation too
    (3, 1, 2, "valid", 2),
    (3, 1, 2, "same", 5),
    ((2, 3), 1, (1, 3), "same", 2),
    (3, (1, 1), (2, 1), 1, 4),
    (2, 1, 3, ((0, 1), (2, 0)), 1),
    (2, 1, 3, "same", 3),  # even kernel: extent 4, asymmetric 'same' padding
    (3, 2, 2, "same", 2),
    (3, (1, 2), 2, "valid", 5),
]


@pytest.mark.parametrize(("kernel", "strides", "dilation", "padding", "cin"), DILATED)
def test_dilated_conv2d_forward_and_grad(kernel, strides, dilation, padding, cin) -> None:
    rng = np.random.default_rng(1)
    kh, kw = _pair(kernel)
    x = rng.standard_normal((2, 9, 10, cin))
    W = rng.standard_normal((kh, kw, cin, 3))
    b = rng.standard_normal(3)

    def op(x, W, b):
        return conv2d(x, W, b, strides=strides, padding=padding, dilation_rate=dilation)

    check_forward(op, lambda x, W, b: dilated_reference(x, W, b, strides, dilation, padding),
                  [x, W, b])
    check_grad(op, [x, W, b])


def test_dilated_conv2d_grad_without_bias_and_a_batch_of_one() -> None:
    rng = np.random.default_rng(2)
    x, W = rng.standard_normal((1, 7, 6, 4)), rng.standard_normal((3, 2, 4, 2))
    check_grad(lambda x, W: conv2d(x, W, padding="same", dilation_rate=(2, 3)), [x, W])


def test_dilated_conv2d_check_bites() -> None:
    """A backward that ignores the dilation must fail the same check."""
    rng = np.random.default_rng(3)
    x, W = rng.standard_normal((1, 7, 7, 2)), rng.standard_normal((3, 3, 2, 2))
    from dlcli.core.ops import conv as conv_module

    original = conv_module.Conv2D._grad_x

    def wrong(self, xp, gy):
        self.dilation = (1, 1)
        return original(self, xp, gy)

    conv_module.Conv2D._grad_x = wrong
    try:
        with pytest.raises(AssertionError, match="gradient of input 0"):
            check_grad(lambda x, W: conv2d(x, W, padding="same", dilation_rate=2), [x, W])
    finally:
        conv_module.Conv2D._grad_x = original


def test_dilation_one_is_the_ordinary_conv() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)
    W = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    for strides, padding in ((1, "same"), (2, "valid")):
        plain = conv2d(Tensor(x), Tensor(W), strides=strides, padding=padding).data
        ones = conv2d(Tensor(x), Tensor(W), strides=strides, padding=padding,
                      dilation_rate=1).data
        np.testing.assert_array_equal(plain, ones)


def test_dilated_conv2d_layer_shapes_macs_params_and_config() -> None:
    layer = Conv2D(4, 3, dilation_rate=2)
    layer.build((11, 10, 2), np.random.default_rng(0))
    assert layer.output_shape == (7, 6, 4)  # extent 5
    assert layer.macs() == 7 * 6 * 3 * 3 * 2 * 4
    plain = Conv2D(4, 3)
    plain.build((11, 10, 2), np.random.default_rng(0))
    assert layer.count_params() == plain.count_params() == 3 * 3 * 2 * 4 + 4
    same = Conv2D(4, (2, 3), padding="same", dilation_rate=(3, 2))
    same.build((11, 10, 2), np.random.default_rng(0))
    assert same.output_shape == (11, 10, 4)
    config = same.get_config()
    assert config["dilation_rate"] == (3, 2)
    assert set(config) == set(inspect.signature(Conv2D.__init__).parameters) - {"self"}
    again = Conv2D(**json.loads(json.dumps(config)))
    assert again.get_config() == config
    with pytest.raises(ShapeError, match=r"dilated to \(9, 9\)"):
        Conv2D(2, 3, dilation_rate=4).build((8, 8, 1), np.random.default_rng(0))


def test_strides_with_dilation_are_refused_as_keras_does() -> None:
    with pytest.raises(ValueError, match="strides > 1 together with dilation_rate > 1"):
        Conv2D(2, 3, strides=(1, 2), dilation_rate=2)
    with pytest.raises(ValueError, match="dilation_rate"):
        Conv2D(2, 3, dilation_rate=0)
    msg = errors(config("- {type: Conv2D, filters: 2, kernel_size: 3, strides: 2, "
                        "dilation_rate: [1, 2]}"))
    assert "dilation_rate: strides > 1 together with dilation_rate > 1" in msg


def test_dilated_conv_in_a_config_and_the_summary() -> None:
    layers = """\
        - {type: Conv2D, filters: 4, kernel_size: 3, padding: same, activation: relu%s}
        - {type: Conv2D, filters: 3, kernel_size: [2, 3]%s}
        - {type: GlobalAveragePooling2D}
        - {type: Dense, units: 2}
        """
    dilated = load(config(layers % (", dilation_rate: 2", ", dilation_rate: [2, 1]")))
    plain = load(config(layers % ("", "")))
    a, b = summary_dict(build_model(dilated)), summary_dict(build_model(plain))
    assert a["total_params"] == b["total_params"]
    assert [r["params"] for r in a["layers"]] == [r["params"] for r in b["layers"]]
    assert a["layers"][1]["output_shape"] == [7, 6, 3]  # extent (3, 3) over 9 x 8
    assert b["layers"][1]["output_shape"] == [8, 6, 3]
    again = load(resolved_yaml(dilated))
    assert again.model.layers[1].dilation_rate == (2, 1)


# -- 4. SpatialDropout2D and Dropout(noise_shape) -----------------------------------------------
def layer_output(layer: Layer, x: np.ndarray, seed: int, shape=None, training: bool = True):
    layer.build(shape or x.shape[1:], np.random.default_rng(0))
    layer.set_rng(np.random.default_rng(seed))
    return layer(Tensor(x), training=training).data


def test_spatial_dropout_drops_whole_channels() -> None:
    rate = 0.3
    x = np.random.default_rng(0).uniform(1, 2, (64, 5, 4, 32)).astype(np.float32)
    y = layer_output(SpatialDropout2D(rate), x, seed=7)
    kept = y != 0
    # each (image, channel) map is dropped or kept whole, kept maps scaled by 1/(1-rate)
    assert np.all(kept == kept[:, :1, :1, :])
    np.testing.assert_allclose(y[kept], x[kept] / (1 - rate), rtol=1e-6)
    assert abs(1 - kept[:, 0, 0, :].mean() - rate) < 0.04
    # the mask is the model generator's next draw of shape (N, 1, 1, C)
    want = np.random.default_rng(7).random((64, 1, 1, 32), dtype=np.float32) >= rate
    np.testing.assert_array_equal(kept[:, :1, :1, :], want)
    # the identity when not training
    np.testing.assert_array_equal(layer_output(SpatialDropout2D(rate), x, 7, training=False), x)


def test_dropout_noise_shape_broadcasts_the_mask() -> None:
    x = np.random.default_rng(1).uniform(1, 2, (16, 6, 6, 8)).astype(np.float32)
    channels = layer_output(Dropout(0.4, noise_shape=[None, 1, 1, None]), x, seed=3)
    np.testing.assert_array_equal(channels, layer_output(SpatialDropout2D(0.4), x, seed=3))
    seq = np.random.default_rng(2).uniform(1, 2, (10, 7, 5))
    y = layer_output(Dropout(0.5, noise_shape=[None, 1, None]), seq, seed=4)
    assert np.all((y != 0) == (y[:, :1, :] != 0))  # one draw per sample and feature
    shared = layer_output(Dropout(0.5, noise_shape=[1, None, None]), seq, seed=4)
    assert np.all((shared != 0) == (shared[:1] != 0))  # one mask for the whole batch


def test_dropout_without_noise_shape_draws_as_before() -> None:
    x = np.random.default_rng(5).uniform(1, 2, (20, 30)).astype(np.float32)
    y = layer_output(Dropout(0.25), x, seed=9)
    want = np.random.default_rng(9).random(x.shape, dtype=np.float32) >= 0.25
    np.testing.assert_array_equal(y != 0, want)
    # a noise_shape equal to the input's draws the very same numbers
    np.testing.assert_array_equal(layer_output(Dropout(0.25, noise_shape=[None, None]), x, 9), y)


@pytest.mark.parametrize("noise_shape", [(None, 1, 1, None), (None, 1, None, 1), (1, 1, 1, None)])
def test_noise_shape_dropout_grad(noise_shape) -> None:
    x = np.random.default_rng(6).standard_normal((3, 4, 5, 6))
    check_grad(lambda t: dropout(t, 0.4, True, np.random.default_rng(2), noise_shape=noise_shape),
               [x])


def test_spatial_dropout_layer_grad_and_the_check_bites() -> None:
    x = np.random.default_rng(7).standard_normal((2, 3, 4, 5))

    def fn(t: Tensor) -> Tensor:
        layer = SpatialDropout2D(0.5, seed=11)  # the same mask on every evaluation
        layer.build((3, 4, 5), None)
        return layer(t, training=True)

    check_grad(fn, [x])
    original = norm.Dropout.backward
    norm.Dropout.backward = lambda self, gy: gy  # forgets the mask
    try:
        with pytest.raises(AssertionError, match="gradient of input 0"):
            check_grad(fn, [x])
    finally:
        norm.Dropout.backward = original


@pytest.mark.parametrize(("make", "shape", "match"), [
    (lambda: SpatialDropout2D(0.2), (12,), "image input"),
    (lambda: Dropout(0.2, noise_shape=[None, 1]), (4, 4, 2), "has 2 entries; it needs 4"),
    (lambda: Dropout(0.2, noise_shape=[None, 3, 1, None]), (4, 4, 2), "does not fit the input"),
    (lambda: Dropout(0.2, noise_shape=[32, 1, 1, None]), (4, 4, 2), "batch entry"),
])  # fmt: skip
def test_dropout_shape_errors(make, shape, match) -> None:
    with pytest.raises(ShapeError, match=match):
        make().build(shape, None)


def test_dropout_argument_errors() -> None:
    with pytest.raises(ValueError, match="SpatialDropout2D rate"):
        SpatialDropout2D(1.0)
    with pytest.raises(ValueError, match="noise_shape"):
        Dropout(0.5, noise_shape=[None, 0])
    with pytest.raises(ValueError, match="noise_shape"):
        Dropout(0.5, noise_shape=3)


@pytest.mark.parametrize("layer", [SpatialDropout2D(0.3, seed=4, name="sd"),
                                   Dropout(0.2, noise_shape=[None, 1, 1, None], seed=2)])
def test_dropout_config_round_trip(layer: Layer) -> None:
    config = layer.get_config()
    assert set(config) == set(inspect.signature(type(layer).__init__).parameters) - {"self"}
    again = type(layer)(**json.loads(json.dumps(config)))
    assert again.get_config() == config


def test_dropouts_in_a_config_follow_the_model_seed() -> None:
    text = config("""\
        - {type: Conv2D, filters: 4, kernel_size: 3, dilation_rate: 2, padding: same}
        - {type: SpatialDropout2D, rate: 0.5}
        - {type: Dropout, rate: 0.3, noise_shape: [null, 1, 1, null]}
        - {type: Flatten}
        - {type: Dense, units: 2}
        """)
    cfg = load(text)
    x = np.random.default_rng(0).standard_normal((6, 9, 8, 2)).astype(np.float32)
    runs = []
    for spec in (cfg, load(resolved_yaml(cfg))):
        model = build_model(spec)
        assert [type(layer).__name__ for layer in model.layers][1:3] == ["SpatialDropout2D",
                                                                         "Dropout"]
        assert model.layers[2].noise_shape == [None, 1, 1, None]
        runs.append(model(x, training=True).data)
    np.testing.assert_array_equal(runs[0], runs[1])  # same seed, same masks
    summary = summary_dict(build_model(cfg))
    assert [r["type"] for r in summary["layers"]][1:3] == ["SpatialDropout2D", "Dropout"]
    assert summary["layers"][1]["params"] == summary["layers"][2]["params"] == 0


# -- ONNX --------------------------------------------------------------------------------------
def test_onnx_export_of_dilated_conv_and_spatial_dropout() -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from dlcli.export.onnx import build_onnx
    from dlcli.predict.runner import model_outputs

    model = Sequential([
        Conv2D(4, 3, dilation_rate=2, padding="same", activation="relu"),
        SpatialDropout2D(0.3),
        Conv2D(3, (2, 3), dilation_rate=(3, 2), padding="same"),  # asymmetric 'same' pads
        Dropout(0.2, noise_shape=[None, 1, 1, None]),
        Conv2D(3, 2, dilation_rate=2),
        Flatten(),
        Dense(3, activation="softmax"),
    ], (11, 10, 2)).build(0)
    proto = build_onnx(model, {"mode": "none"})
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    dilations = [next(list(a.ints) for a in n.attribute if a.name == "dilations") for n in convs]
    assert dilations == [[2, 2], [3, 2], [2, 2]]
    pads = [next(list(a.ints) for a in n.attribute if a.name == "pads") for n in convs]
    assert pads[1] == [1, 2, 2, 2]  # extents (4, 5) over 11 x 10: top, left, bottom, right
    assert not any(n.op_type == "Dropout" for n in proto.graph.node)
    x = np.random.default_rng(0).normal(0, 2, (5, 11, 10, 2)).astype(np.float32)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"input": x})[0], model_outputs(model, x, 5),
                               rtol=1e-5, atol=1e-6)
