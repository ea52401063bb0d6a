"""Data augmentation as layers, with Keras's preprocessing-layer names, arguments and formulas.

Active only while training; the identity in evaluation, prediction and export (RandomCrop
center-crops there, as in Keras). Each draws its random numbers from the model's generator
(Sequential.set_rng), so one seed gives one run and a resumed run continues the same stream;
a layer given its own `seed` keeps its own generator. The per-image parameters are drawn on the
host (a few numbers per image) and applied to the whole batch at once.
"""

from __future__ import annotations

import abc
import math
from typing import Any

import numpy as np

from dlcli.core.backend import get_array_module
from dlcli.core.ops import image
from dlcli.core.random import device_generator
from dlcli.core.tensor import Tensor
from dlcli.nn.layers.base import Layer, Shape, ShapeError

FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")


def factor_range(factor: Any, name: str, *, nonnegative: bool = False) -> tuple[float, float]:
    """Keras's factor rule: a float f means [-f, f]; a pair (lower, upper) is taken as is."""
    if isinstance(factor, bool):
        raise ValueError(f"{name} must be a number or a pair (lower, upper), got {factor!r}")
    if isinstance(factor, int | float):
        lo, hi = -abs(float(factor)), abs(float(factor))
    else:
        try:
            lo, hi = (float(v) for v in factor)
        except (TypeError, ValueError):
            raise ValueError(
                f"{name} must be a number or a pair (lower, upper), got {factor!r}") from None
    if lo > hi:
        raise ValueError(f"{name}: lower bound {lo} is above the upper bound {hi}")
    if nonnegative and lo < 0:
        raise ValueError(f"{name} must be >= 0, got {factor!r}")
    return lo, hi


def _value_range(value_range: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ValueError(f"value_range must be a pair (low, high), got {value_range!r}") from None
    if not lo < hi:
        raise ValueError(f"value_range must have low < high, got {value_range!r}")
    return lo, hi


class _Augmentation(Layer):
    """Shared: the generator, the training switch, and image-shape checks."""

    needs_image = True

    def __init__(self, seed: int | None = None, name: str | None = None) -> None:
        super().__init__(name)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an integer or None, got {seed!r}")
        self.seed = seed
        self.rng: Any = None if seed is None else np.random.default_rng(seed)
        self.device_rng: Any = None  # GaussianNoise on a GPU: a CounterRNG keyed from self.rng

    def set_rng(self, rng: Any) -> None:
        if self.seed is None:
            self.rng = rng
            self.device_rng = None

    def generator(self) -> np.random.Generator:
        """Host numbers (a few per image) come from a numpy generator on every device."""
        if self.rng is None:
            self.rng = np.random.default_rng()
        if isinstance(self.rng, np.random.Generator):
            return self.rng
        return np.random.default_rng(int(self.rng.integers(2**63)))  # a device generator

    def device_generator(self, xp: Any) -> Any:
        """Whole-batch noise on a GPU: a CounterRNG keyed once from the host generator, its state
        saved in checkpoints (dlcli.core.random)."""
        if self.device_rng is None or self.device_rng.xp is not xp:
            self.device_rng = device_generator(self.generator(), xp)
        return self.device_rng

    def build(self, input_shape: Shape, rng: np.random.Generator) -> Shape:
        if self.needs_image and (len(input_shape) != 3 or min(input_shape) < 1):
            raise ShapeError(
                f"expects an image input (height, width, channels), got {tuple(input_shape)}")
        return super().build(input_shape, rng)

    def __call__(self, x: Tensor, training: bool = False) -> Tensor:
        if not self.built:
            raise RuntimeError(f"layer {self.name or type(self).__name__} is used before build()")
        return self.call(x, training=training) if training else self.infer(x)

    def infer(self, x: Tensor) -> Tensor:
        """The layer at inference: the identity."""
        return x

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed, "name": self.name}


class RandomFlip(_Augmentation):
    """Flip each image left-right and/or upside down with probability 1/2 each."""

    default_name = "random_flip"

    def __init__(self, mode: str = "horizontal_and_vertical", seed: int | None = None,
                 name: str | None = None) -> None:
        super().__init__(seed, name)
        if mode not in FLIP_MODES:
            raise ValueError(f"RandomFlip mode must be one of {FLIP_MODES}, got {mode!r}")
        self.mode = mode

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        n = x.shape[0]
        draws = self.generator().random((2, n)) < 0.5
        flip_h = draws[0] & (self.mode != "vertical")
        flip_v = draws[1] & (self.mode != "horizontal")
        return image.flip(x, flip_h, flip_v)

    def get_config(self) -> dict[str, Any]:
        return {"mode": self.mode, **super().get_config()}


class _AffineAugmentation(_Augmentation):
    """A random affine warp per image: subclasses give the matrices."""

    def __init__(self, fill_mode: str = "reflect", interpolation: str = "bilinear",
                 seed: int | None = None, fill_value: float = 0.0,
                 name: str | None = None) -> None:
        super().__init__(seed, name)
        if fill_mode not in image.FILL_MODES:
            raise ValueError(f"fill_mode must be one of {image.FILL_MODES}, got {fill_mode!r}")
        if interpolation not in image.INTERPOLATIONS:
            raise ValueError(
                f"interpolation must be one of {image.INTERPOLATIONS}, got {interpolation!r}")
        self.fill_mode, self.interpolation = fill_mode, interpolation
        self.fill_value = float(fill_value)

    @abc.abstractmethod
    def matrices(self, n: int, h: int, w: int) -> np.ndarray:
        """(n, 6) rows [a0, a1, a2, b0, b1, b2], output pixel -> input point."""

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        n, h, w = x.shape[:3]
        return image.warp(x, self.matrices(n, h, w), None, self.fill_mode, self.interpolation,
                          self.fill_value)

    def get_config(self) -> dict[str, Any]:
        return {"fill_mode": self.fill_mode, "interpolation": self.interpolation,
                "fill_value": self.fill_value, **super().get_config()}


class RandomTranslation(_AffineAugmentation):
    """Shift each image by a random fraction of its height and width (Keras formula)."""

    default_name = "random_translation"

    def __init__(self, height_factor: Any, width_factor: Any, fill_mode: str = "reflect",
                 interpolation: str = "bilinear", seed: int | None = None,
                 fill_value: float = 0.0, name: str | None = None) -> None:
        super().__init__(fill_mode, interpolation, seed, fill_value, name)
        self.height_factor, self.width_factor = height_factor, width_factor
        self.h_range = factor_range(height_factor, "height_factor")
        self.w_range = factor_range(width_factor, "width_factor")

    def matrices(self, n: int, h: int, w: int) -> np.ndarray:
        rng = self.generator()
        dy = rng.uniform(*self.h_range, n) * h
        dx = rng.uniform(*self.w_range, n) * w
        one, zero = np.ones(n), np.zeros(n)
        return np.stack([one, zero, -dx, zero, one, -dy], axis=1)

    def get_config(self) -> dict[str, Any]:
        return {"height_factor": self.height_factor, "width_factor": self.width_factor,
                **super().get_config()}


class RandomRotation(_AffineAugmentation):
    """Rotate each image about its center by a random fraction of a full turn."""

    default_name = "random_rotation"

    def __init__(self, factor: Any, fill_mode: str = "reflect", interpolation: str = "bilinear",
                 seed: int | None = None, fill_value: float = 0.0,
                 name: str | None = None) -> None:
        super().__init__(fill_mode, interpolation, seed, fill_value, name)
        self.factor = factor
        self.range = factor_range(factor, "factor")

    def matrices(self, n: int, h: int, w: int) -> np.ndarray:
        theta = self.generator().uniform(*self.range, n) * 2 * math.pi
        cos, sin = np.cos(theta), np.sin(theta)
        # Keras's rotation about the center: the matrix keeps pixel ((w-1)/2, (h-1)/2) in place
        x_off = ((w - 1) - (cos * (w - 1) - sin * (h - 1))) / 2
        y_off = ((h - 1) - (sin * (w - 1) + cos * (h - 1))) / 2
        return np.stack([cos, -sin, x_off, sin, cos, y_off], axis=1)

    def get_config(self) -> dict[str, Any]:
        return {"factor": self.factor, **super().get_config()}


class RandomZoom(_AffineAugmentation):
    """Zoom each image about its center: a positive factor zooms out, a negative one in."""

    default_name = "random_zoom"

    def __init__(self, height_factor: Any, width_factor: Any = None, fill_mode: str = "reflect",
                 interpolation: str = "bilinear", seed: int | None = None,
                 fill_value: float = 0.0, name: str | None = None) -> None:
        super().__init__(fill_mode, interpolation, seed, fill_value, name)
        self.height_factor, self.width_factor = height_factor, width_factor
        self.h_range = factor_range(height_factor, "height_factor")
        self.w_range = None if width_factor is None else factor_range(width_factor, "width_factor")
        for lo, _ in (self.h_range, self.w_range or (0.0, 0.0)):
            if lo <= -1:
                raise ValueError("RandomZoom factors must be above -1 (a zoom of 0 or less)")

    def matrices(self, n: int, h: int, w: int) -> np.ndarray:
        rng = self.generator()
        zy = 1.0 + rng.uniform(*self.h_range, n)
        # no width_factor: the same zoom both ways, keeping the aspect ratio (Keras)
        zx = zy if self.w_range is None else 1.0 + rng.uniform(*self.w_range, n)
        zero = np.zeros(n)
        return np.stack([zx, zero, (w - 1) / 2 * (1 - zx), zero, zy, (h - 1) / 2 * (1 - zy)],
                        axis=1)

    def get_config(self) -> dict[str, Any]:
        return {"height_factor": self.height_factor, "width_factor": self.width_factor,
                **super().get_config()}


class RandomCrop(_Augmentation):
    """A random height x width window while training; the center window otherwise (Keras)."""

    default_name = "random_crop"

    def __init__(self, height: int, width: int, seed: int | None = None,
                 name: str | None = None) -> None:
        super().__init__(seed, name)
        for what, v in (("height", height), ("width", width)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"RandomCrop {what} must be a positive integer, got {v!r}")
        self.height, self.width = int(height), int(width)

    def build(self, input_shape: Shape, rng: np.random.Generator) -> Shape:
        super().build(input_shape, rng)
        h, w, c = input_shape
        if self.height > h or self.width > w:
            raise ShapeError(f"crop ({self.height}, {self.width}) is larger than its input "
                             f"{tuple(input_shape)}")
        self.output_shape = (self.height, self.width, c)
        return self.output_shape

    def _crop(self, x: Tensor, top: np.ndarray, left: np.ndarray) -> Tensor:
        n = len(top)
        one, zero = np.ones(n), np.zeros(n)
        m = np.stack([one, zero, left, zero, one, top], axis=1)
        return image.warp(x, m, (self.height, self.width), "constant", "nearest")

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        n, h, w = x.shape[:3]
        rng = self.generator()
        top = rng.integers(0, h - self.height + 1, n).astype(np.float64)
        left = rng.integers(0, w - self.width + 1, n).astype(np.float64)
        return self._crop(x, top, left)

    def offsets(self) -> tuple[int, int]:
        """The center window's top-left corner (inference and export)."""
        h, w = self.input_shape[:2]
        return (h - self.height) // 2, (w - self.width) // 2

    def infer(self, x: Tensor) -> Tensor:
        if tuple(self.input_shape[:2]) == (self.height, self.width):
            return x
        top, left = self.offsets()
        n = x.shape[0]
        return self._crop(x, np.full(n, float(top)), np.full(n, float(left)))

    def get_config(self) -> dict[str, Any]:
        return {"height": self.height, "width": self.width, **super().get_config()}


class RandomContrast(_Augmentation):
    """(x - mean) * f + mean per image and channel, f in [1 - lower, 1 + upper], then clipped
    to value_range (Keras 3)."""

    default_name = "random_contrast"

    def __init__(self, factor: Any, value_range: Any = (0, 255), seed: int | None = None,
                 name: str | None = None) -> None:
        super().__init__(seed, name)
        self.factor = factor
        # a float f: both bounds f; a pair (lower, upper); the contrast is in [1-lower, 1+upper]
        if isinstance(factor, int | float) and not isinstance(factor, bool):
            lower = upper = float(factor)
        else:
            try:
                lower, upper = (float(v) for v in factor)
            except (TypeError, ValueError):
                raise ValueError(f"RandomContrast factor must be a number or a pair (lower, "
                                 f"upper), got {factor!r}") from None
        if not (0 <= lower <= 1 and upper >= 0):
            raise ValueError(f"RandomContrast factor must be in [0, 1] (upper may exceed 1), "
                             f"got {factor!r}")
        self.range = (1 - lower, 1 + upper)
        self.value_range = _value_range(value_range)

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        f = self.generator().uniform(*self.range, x.shape[0])
        return image.clip_range(image.contrast(x, f), *self.value_range)

    def get_config(self) -> dict[str, Any]:
        return {"factor": self.factor, "value_range": list(self.value_range),
                **super().get_config()}


class RandomBrightness(_Augmentation):
    """Add factor * (high - low) per image, factor drawn in its range, then clip (Keras 3)."""

    default_name = "random_brightness"
    needs_image = False

    def __init__(self, factor: Any, value_range: Any = (0, 255), seed: int | None = None,
                 name: str | None = None) -> None:
        super().__init__(seed, name)
        self.factor = factor
        self.range = factor_range(factor, "factor")
        if self.range[0] < -1 or self.range[1] > 1:
            raise ValueError(f"RandomBrightness factor must be within [-1, 1], got {factor!r}")
        self.value_range = _value_range(value_range)

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        n = x.shape[0]
        lo, hi = self.value_range
        delta = self.generator().uniform(*self.range, n) * (hi - lo)
        xp = get_array_module(x.data)
        shift = Tensor(xp.asarray(delta.reshape(n, *([1] * (x.ndim - 1))), dtype=x.dtype))
        return image.clip_range(x + shift, lo, hi)

    def get_config(self) -> dict[str, Any]:
        return {"factor": self.factor, "value_range": list(self.value_range),
                **super().get_config()}


class GaussianNoise(_Augmentation):
    """Add zero-mean normal noise of standard deviation `stddev` while training."""

    default_name = "gaussian_noise"
    needs_image = False

    def __init__(self, stddev: float, seed: int | None = None, name: str | None = None) -> None:
        super().__init__(seed, name)
        if isinstance(stddev, bool) or not isinstance(stddev, int | float) or stddev < 0:
            raise ValueError(f"GaussianNoise stddev must be a number >= 0, got {stddev!r}")
        self.stddev = float(stddev)

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        if self.stddev == 0:
            return x
        xp = get_array_module(x.data)
        if xp is not np:  # drawn where it is added: no batch-sized upload per step
            noise = self.device_generator(xp).standard_normal(x.shape, dtype=x.dtype)
            return x + Tensor(noise * x.dtype.type(self.stddev))
        noise = self.generator().standard_normal(x.shape) * self.stddev
        return x + Tensor(xp.asarray(noise, dtype=x.dtype))

    def get_config(self) -> dict[str, Any]:
        return {"stddev": self.stddev, **super().get_config()}


AUGMENTATIONS = (RandomFlip, RandomTranslation, RandomRotation, RandomZoom, RandomCrop,
                 RandomContrast, RandomBrightness, GaussianNoise)
