"""Augmentation: the image ops against loop references and central differences, and the layers'
formulas, statistics, determinism and inference behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dlcli.core.gradcheck import check_grad
from dlcli.core.ops import image
from dlcli.core.tensor import Tensor
from dlcli.nn.layers import ShapeError
from dlcli.nn.layers.augment import (
    GaussianNoise,
    RandomBrightness,
    RandomContrast,
    RandomCrop,
    RandomFlip,
    RandomRotation,
    RandomTranslation,
    RandomZoom,
)
from dlcli.nn.sequential import Sequential


def images(n: int = 3, h: int = 5, w: int = 6, c: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, h, w, c))


def _reference_warp(x, m, out_hw, fill_mode, interpolation, fill_value):
    """TensorFlow's ImageProjectiveTransformV3 written as plain loops."""
    n, h, w, c = x.shape
    ho, wo = out_hw

    def mapc(v, size):
        if fill_mode == "constant":
            return v
        if size == 1:
            return 0.0
        if fill_mode == "reflect":
            v = v % (2 * size)
            v = 2 * size - v - 1 if v >= size else v
        elif fill_mode == "wrap":
            v = v % size
        return min(max(v, 0.0), size - 1.0)

    def read(b, yy, xx, ch):
        if 0 <= yy <= h - 1 and 0 <= xx <= w - 1:
            return x[b, int(yy), int(xx), ch]
        return fill_value

    y = np.zeros((n, ho, wo, c))
    for b in range(n):
        a0, a1, a2, b0, b1, b2 = m[b]
        for i in range(ho):
            for j in range(wo):
                sx, sy = mapc(a0 * j + a1 * i + a2, w), mapc(b0 * j + b1 * i + b2, h)
                for ch in range(c):
                    if interpolation == "nearest":
                        y[b, i, j, ch] = read(b, math.floor(sy + 0.5), math.floor(sx + 0.5), ch)
                        continue
                    y0, x0 = math.floor(sy), math.floor(sx)
                    dy, dx = sy - y0, sx - x0
                    y[b, i, j, ch] = ((1 - dy) * (1 - dx) * read(b, y0, x0, ch)
                                      + (1 - dy) * dx * read(b, y0, x0 + 1, ch)
                                      + dy * (1 - dx) * read(b, y0 + 1, x0, ch)
                                      + dy * dx * read(b, y0 + 1, x0 + 1, ch))
    return y


MATRICES = np.array([
    [1, 0, 0, 0, 1, 0],                  # identity
    [1, 0, -2.3, 0, 1, 1.7],             # a shift by a fraction of a pixel
    [0.8, -0.5, 1.0, 0.5, 0.8, -1.2],    # rotation and zoom
])  # fmt: skip


@pytest.mark.parametrize("fill_mode", image.FILL_MODES)
@pytest.mark.parametrize("interpolation", image.INTERPOLATIONS)
def test_warp_matches_the_loop_reference(fill_mode: str, interpolation: str) -> None:
    x = images()
    y = image.warp(Tensor(x), MATRICES, None, fill_mode, interpolation, fill_value=0.7)
    want = _reference_warp(x, MATRICES, (5, 6), fill_mode, interpolation, 0.7)
    np.testing.assert_allclose(y.data, want, atol=1e-12)
    np.testing.assert_array_equal(y.data[0], x[0])  # the identity matrix changes nothing


@pytest.mark.parametrize("fill_mode", image.FILL_MODES)
@pytest.mark.parametrize("interpolation", image.INTERPOLATIONS)
def test_warp_gradient(fill_mode: str, interpolation: str) -> None:
    check_grad(lambda t: image.warp(t, MATRICES, (4, 7), fill_mode, interpolation, 0.5),
               [images()])


def test_warp_rotates_a_quarter_turn_like_rot90() -> None:
    x = images(1, 5, 5, 1)
    layer = RandomRotation(0.0)
    layer.build((5, 5, 1), np.random.default_rng(0))
    theta = math.pi / 2
    cos, sin = math.cos(theta), math.sin(theta)
    x_off = (4 - (cos * 4 - sin * 4)) / 2
    y_off = (4 - (sin * 4 + cos * 4)) / 2
    y = image.warp(Tensor(x), np.array([[cos, -sin, x_off, sin, cos, y_off]]))
    # a positive angle turns the image counter-clockwise, as Keras documents
    np.testing.assert_allclose(y.data[0, :, :, 0], np.rot90(x[0, :, :, 0], k=1), atol=1e-9)


def test_flip_contrast_and_clip_gradients() -> None:
    check_grad(lambda t: image.flip(t, [True, False, True], [False, False, True]), [images()])
    check_grad(lambda t: image.contrast(t, np.array([0.5, 1.0, 1.7])), [images()])
    x = images()
    x = np.where(np.abs(np.abs(x) - 0.8) < 0.05, 0.5, x)  # away from the clip's kinks
    check_grad(lambda t: image.clip_range(t, -0.8, 0.8), [x])


def test_check_grad_bites_on_a_wrong_warp_backward(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image.Warp, "backward", lambda self, gy: np.zeros(self.in_shape))
    with pytest.raises(AssertionError, match="gradient"):
        check_grad(lambda t: image.warp(t, MATRICES), [images()])


def built(layer, shape=(8, 8, 1), seed=0):
    return Sequential([layer], shape).build(seed)


def test_every_augmentation_is_the_identity_at_inference() -> None:
    x = images(4, 8, 8, 1) * 50 + 100
    for layer in (RandomFlip(), RandomTranslation(0.3, 0.3), RandomRotation(0.5),
                  RandomZoom(0.4), RandomContrast(0.5), RandomBrightness(0.3),
                  GaussianNoise(1.0)):
        model = built(layer)
        assert model(Tensor(x), training=False).data is not None
        np.testing.assert_array_equal(model(Tensor(x), training=False).data, x)
        assert not np.array_equal(model(Tensor(x), training=True).data, x), type(layer).__name__


def test_same_seed_same_augmentation_and_the_stream_moves_on() -> None:
    x = images(6, 8, 8, 1)
    a = built(RandomRotation(0.2), seed=3)
    b = built(RandomRotation(0.2), seed=3)
    first = a(Tensor(x), training=True).data
    np.testing.assert_array_equal(first, b(Tensor(x), training=True).data)
    assert not np.array_equal(first, a(Tensor(x), training=True).data)  # next batch: new draws


def test_flip_statistics() -> None:
    x = np.tile(np.arange(4.0).reshape(1, 1, 4, 1), (4000, 4, 1, 1))
    for mode, want_h, want_v in (("horizontal", 0.5, 0.0), ("vertical", 0.0, 0.5),
                                 ("horizontal_and_vertical", 0.5, 0.5)):
        y = built(RandomFlip(mode), (4, 4, 1))(Tensor(x), training=True).data
        flipped_h = np.mean(y[:, 0, 0, 0] == 3)
        assert abs(flipped_h - want_h) < 0.03, (mode, flipped_h)
        v = np.tile(np.arange(4.0).reshape(1, 4, 1, 1), (4000, 1, 4, 1))
        yv = built(RandomFlip(mode), (4, 4, 1))(Tensor(v), training=True).data
        assert abs(np.mean(yv[:, 0, 0, 0] == 3) - want_v) < 0.03


def test_translation_moves_content_by_whole_pixels_at_most_the_factor() -> None:
    x = np.zeros((500, 9, 9, 1))
    x[:, 4, 4] = 1.0
    layer = RandomTranslation((-0.25, 0.25), (0.0, 0.0), fill_mode="constant",
                              interpolation="nearest")
    y = built(layer, (9, 9, 1))(Tensor(x), training=True).data
    rows = np.argmax(y[:, :, 4, 0], axis=1)  # where the dot went
    assert rows.min() >= 4 - 3 and rows.max() <= 4 + 3  # 0.25 * 9 = 2.25 px, rounded
    assert len(set(rows.tolist())) >= 4  # really random
    np.testing.assert_array_equal(y[:, :, :4, 0].sum(), 0)  # no horizontal move


def test_zoom_out_shrinks_a_centered_square() -> None:
    x = np.zeros((1, 11, 11, 1))
    x[0, 3:8, 3:8] = 1.0  # 5x5 square at the center
    layer = RandomZoom((1.0, 1.0), fill_mode="constant", interpolation="nearest")  # zoom 2x out
    y = built(layer, (11, 11, 1))(Tensor(x), training=True).data
    assert 4 <= y.sum() <= 9  # about a quarter of the area


def test_random_crop_shapes_and_center_at_inference() -> None:
    x = images(5, 8, 10, 2)
    layer = RandomCrop(4, 6)
    model = Sequential([layer], (8, 10, 2)).build(0)
    assert model.output_shape == (4, 6, 2)
    y = model(Tensor(x), training=True).data
    assert y.shape == (5, 4, 6, 2)
    for img, crop in zip(x, y, strict=True):  # every crop is a window of its image
        assert any(np.array_equal(img[t:t + 4, s:s + 6], crop)
                   for t in range(5) for s in range(5))
    np.testing.assert_array_equal(model(Tensor(x), training=False).data, x[:, 2:6, 2:8])
    with pytest.raises(ShapeError, match="larger than its input"):
        Sequential([RandomCrop(9, 2)], (8, 10, 2)).build(0)
    def same_crops(t):  # the same draws on every call, so central differences see one function
        layer.rng = np.random.default_rng(5)
        return layer(t, training=True)

    check_grad(same_crops, [x])


def test_contrast_and_brightness_formulas_and_value_range() -> None:
    x = np.random.default_rng(1).uniform(0, 255, (2000, 4, 4, 3))
    y = built(RandomContrast(0.5), (4, 4, 3))(Tensor(x), training=True).data
    mean = x.mean(axis=(1, 2), keepdims=True)
    f = ((y - mean) / (x - mean))[:, 0, 0, 0]
    unclipped = (y > 0).all(axis=(1, 2, 3)) & (y < 255).all(axis=(1, 2, 3))
    assert f[unclipped].min() >= 0.5 - 1e-9 and f[unclipped].max() <= 1.5 + 1e-9
    assert y.min() >= 0 and y.max() <= 255
    b = built(RandomBrightness((0.1, 0.2), value_range=(0, 1)), (4, 4, 3))
    z = b(Tensor(np.full((1000, 4, 4, 3), 0.5)), training=True).data
    delta = z[:, 0, 0, 0] - 0.5
    assert delta.min() >= 0.1 - 1e-9 and delta.max() <= 0.2 + 1e-9
    assert np.all(z == z[:, :1, :1, :1])  # one delta per image


def test_gaussian_noise_statistics() -> None:
    y = built(GaussianNoise(0.3), (10, 10, 3))(Tensor(np.zeros((100, 10, 10, 3))),
                                                training=True).data
    assert abs(y.mean()) < 0.01 and abs(y.std() - 0.3) < 0.01


@pytest.mark.parametrize("make, message", [
    (lambda: RandomFlip("diagonal"), "mode"),
    (lambda: RandomTranslation(0.1, 0.1, fill_mode="mirror"), "fill_mode"),
    (lambda: RandomRotation(0.1, interpolation="cubic"), "interpolation"),
    (lambda: RandomZoom(-1.5), "above -1"),
    (lambda: RandomContrast(1.5), "in \\[0, 1\\]"),
    (lambda: RandomBrightness(2.0), "within \\[-1, 1\\]"),
    (lambda: GaussianNoise(-1.0), ">= 0"),
    (lambda: RandomCrop(0, 3), "positive integer"),
])  # fmt: skip
def test_bad_arguments(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_layer_config_round_trip() -> None:
    for layer in (RandomFlip("vertical", seed=1), RandomTranslation(0.1, (0.0, 0.2)),
                  RandomRotation(0.2, fill_mode="wrap"), RandomZoom(0.1, 0.2),
                  RandomCrop(3, 4), RandomContrast((0.2, 0.3)), RandomBrightness(0.1),
                  GaussianNoise(0.5)):
        again = type(layer)(**layer.get_config())
        assert again.get_config() == layer.get_config()


def test_augmentation_exports_as_the_identity_and_crop_as_the_center() -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from dlcli.export.onnx import build_onnx
    from dlcli.nn.layers import Conv2D, Flatten
    from dlcli.predict.runner import model_outputs

    layers = [RandomFlip(), RandomTranslation(0.1, 0.1), RandomRotation(0.1), RandomZoom(0.1),
              RandomContrast(0.2), RandomBrightness(0.1), GaussianNoise(0.1),
              Conv2D(3, 3, padding="same"), RandomCrop(5, 4), Flatten()]
    model = Sequential(layers, (8, 7, 2)).build(0)
    proto = build_onnx(model, {"mode": "none"})
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Slice") == 1 and not {"RandomNormal", "RandomUniform"} & set(ops)
    x = images(4, 8, 7, 2).astype(np.float32)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"input": x})[0], model_outputs(model, x, 4),
                               atol=1e-5)


def test_training_with_augmentation_reruns_and_resumes_exactly(tmp_path) -> None:
    import csv
    import textwrap

    from dlcli.config import load_config_text
    from dlcli.io.checkpoint import load_checkpoint
    from dlcli.train.trainer import Interrupted, NullReporter, Trainer

    rng = np.random.default_rng(0)
    data = tmp_path / "img.npz"
    np.savez(data, x=rng.integers(0, 256, (96, 8, 8, 1), dtype=np.uint8), y=np.arange(96) % 3)
    text = textwrap.dedent(f"""
        name: aug
        seed: 4
        data: {{train: {data}, validation_split: 0.25, batch_size: 8, normalize: scale}}
        model:
          input_shape: [8, 8, 1]
          layers:
            - {{type: RandomFlip}}
            - {{type: RandomRotation, factor: 0.1, seed: 7}}  # its own generator, saved too
            - {{type: RandomZoom, height_factor: 0.2, fill_mode: constant}}
            - {{type: RandomContrast, factor: 0.3, value_range: [0, 1]}}
            - {{type: GaussianNoise, stddev: 0.05}}
            - {{type: Conv2D, filters: 3, kernel_size: 3, activation: relu}}
            - {{type: Flatten}}
            - {{type: Dense, units: 3, activation: softmax}}
        loss: sparse_categorical_crossentropy
        metrics: [accuracy]
        optimizer: {{type: adam, learning_rate: 0.01}}
        training: {{epochs: 3}}
    """)

    def rows(run):
        with open(run / "history.csv") as f:
            return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]

    Trainer(load_config_text(text), run_dir=tmp_path / "a").fit()
    Trainer(load_config_text(text), run_dir=tmp_path / "b").fit()
    assert rows(tmp_path / "a") == rows(tmp_path / "b")  # the same seed, the same run

    class Stop(NullReporter):
        def batch_end(self, batch, logs, samples):
            if batch == 4 and self.epoch == 1:
                trainer.request_stop()

        def epoch_begin(self, epoch, epochs, n_batches):
            self.epoch = epoch

    trainer = Trainer(load_config_text(text), run_dir=tmp_path / "c", reporter=Stop())
    with pytest.raises(Interrupted):
        trainer.fit()
    ckpt = load_checkpoint(tmp_path / "c" / "checkpoints" / "last")
    Trainer(load_config_text(text), run_dir=tmp_path / "d", resume=ckpt).fit()
    assert rows(tmp_path / "d") == rows(tmp_path / "a")  # resumed inside an epoch: exact
