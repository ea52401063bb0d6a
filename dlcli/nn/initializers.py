"""Weight initializers with Keras's names, fan computation and formulas.

An initializer is a function `(shape, rng) -> np.ndarray` (float32) that draws every random
number from the numpy Generator it is given, so one seed fixes all weights of a model.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import numpy as np

Initializer = Callable[[tuple[int, ...], np.random.Generator], np.ndarray]

# Keras divides the stddev of its truncated normals by this constant: the stddev of a standard
# normal truncated to [-2, 2], so that the truncated draw has the variance asked for.
_TRUNCATED_STD = 0.87962566103423978


def compute_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) as Keras computes them; conv kernels count the receptive field."""
    shape = tuple(shape)
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


def truncated_normal(
    shape: tuple[int, ...], rng: np.random.Generator, stddev: float, mean: float = 0.0
) -> np.ndarray:
    """Normal(mean, stddev) redrawn beyond two stddev from the mean (tf.random.truncated_normal)."""
    z = rng.standard_normal(shape)
    bad = np.abs(z) > 2.0
    while bad.any():
        z[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(z) > 2.0
    if mean:  # the default leaves the arithmetic (and so the weights) as they always were
        return (z * stddev + mean).astype(np.float32)
    return (z * stddev).astype(np.float32)


# -- factories: Keras's arguments in, an initializer (shape, rng) -> array out --------------------
FAN_MODES = ("fan_in", "fan_out", "fan_avg")
# Keras lower-cases the distribution and reads "normal" as "truncated_normal"
DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform", "normal")


def _number(value: Any, what: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"initializer argument {what} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"initializer argument {what} must be positive, got {value!r}")
    return float(value)


def variance_scaling(
    scale: float = 1.0, mode: str = "fan_in", distribution: str = "truncated_normal"
) -> Initializer:
    """Keras VarianceScaling: variance scale / n, n = fan_in, fan_out or their mean (at least 1).

    truncated_normal divides the stddev by the stddev of a standard normal cut at [-2, 2], so
    that the draw has the variance asked for; untruncated_normal and uniform do not need to.
    """
    scale = _number(scale, "scale", positive=True)
    if mode not in FAN_MODES:
        raise ValueError(f"variance_scaling mode must be one of {', '.join(FAN_MODES)}, "
                         f"got {mode!r}")
    dist = distribution.lower() if isinstance(distribution, str) else distribution
    if dist not in DISTRIBUTIONS:
        raise ValueError(f"variance_scaling distribution must be one of "
                         f"{', '.join(DISTRIBUTIONS)}, got {distribution!r}")
    if dist == "normal":
        dist = "truncated_normal"

    def init(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        fan_in, fan_out = compute_fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[mode]
        variance = scale / max(1.0, n)
        if dist == "truncated_normal":
            return truncated_normal(shape, rng, math.sqrt(variance) / _TRUNCATED_STD)
        if dist == "untruncated_normal":
            return rng.normal(0.0, math.sqrt(variance), size=shape).astype(np.float32)
        limit = math.sqrt(3.0 * variance)
        return rng.uniform(-limit, limit, size=shape).astype(np.float32)

    return init


def orthogonal(gain: float = 1.0) -> Initializer:
    """Keras Orthogonal: QR of a normal matrix, signs of diag(R) folded into Q, times gain."""
    gain = _number(gain, "gain")

    def init(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        if len(shape) < 2:
            raise ValueError(
                f"the orthogonal initializer needs a shape of rank 2 or more, got {shape}")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        a = rng.standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        # without the sign fix Q would not be uniformly distributed over orthogonal matrices
        q *= np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        if gain != 1.0:
            q = q * gain
        return q.reshape(shape).astype(np.float32)

    return init


def random_normal(mean: float = 0.0, stddev: float = 0.05) -> Initializer:
    """Keras RandomNormal(mean=0, stddev=0.05)."""
    mean, stddev = _number(mean, "mean"), _number(stddev, "stddev")
    if stddev < 0:
        raise ValueError(f"initializer argument stddev must be >= 0, got {stddev!r}")

    def init(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        return rng.normal(mean, stddev, size=shape).astype(np.float32)

    return init


def random_uniform(minval: float = -0.05, maxval: float = 0.05) -> Initializer:
    """Keras RandomUniform(minval=-0.05, maxval=0.05)."""
    minval, maxval = _number(minval, "minval"), _number(maxval, "maxval")
    if minval > maxval:
        raise ValueError(f"random_uniform needs minval <= maxval, got {minval} and {maxval}")

    def init(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(minval, maxval, size=shape).astype(np.float32)

    return init


def truncated_normal_initializer(mean: float = 0.0, stddev: float = 0.05) -> Initializer:
    """Keras TruncatedNormal(mean=0, stddev=0.05): values beyond 2 stddev from the mean redrawn."""
    mean, stddev = _number(mean, "mean"), _number(stddev, "stddev")
    if stddev < 0:
        raise ValueError(f"initializer argument stddev must be >= 0, got {stddev!r}")

    def init(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        return truncated_normal(shape, rng, stddev, mean)

    return init


def constant(value: float = 0.0) -> Initializer:
    """Keras Constant(value=0): every entry is value; draws nothing."""
    value = _number(value, "value")

    def init(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        return np.full(shape, value, dtype=np.float32)

    return init


def identity(gain: float = 1.0) -> Initializer:
    """Keras IdentityInitializer(gain=1): gain * eye(rows, cols), for 2-D weights only."""
    gain = _number(gain, "gain")

    def init(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        if len(shape) != 2:
            raise ValueError(f"the identity initializer makes 2-D matrices only, got a weight of "
                             f"shape {tuple(shape)} (rank {len(shape)})")
        return (gain * np.eye(*shape)).astype(np.float32)

    return init


def _fixed(init: Initializer) -> Callable[[], Initializer]:
    def factory() -> Initializer:
        return init

    return factory


def zeros(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    return np.zeros(shape, dtype=np.float32)


def ones(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    return np.ones(shape, dtype=np.float32)


# name -> factory taking Keras's arguments (by keyword; Keras's `seed` is left out: every
# initializer draws from the model's one generator, so the config's seed fixes all weights)
_FACTORIES: dict[str, Callable[..., Initializer]] = {
    "glorot_uniform": _fixed(variance_scaling(1.0, "fan_avg", "uniform")),
    "glorot_normal": _fixed(variance_scaling(1.0, "fan_avg", "truncated_normal")),
    "he_uniform": _fixed(variance_scaling(2.0, "fan_in", "uniform")),
    "he_normal": _fixed(variance_scaling(2.0, "fan_in", "truncated_normal")),
    "lecun_uniform": _fixed(variance_scaling(1.0, "fan_in", "uniform")),
    "lecun_normal": _fixed(variance_scaling(1.0, "fan_in", "truncated_normal")),
    "orthogonal": orthogonal,
    "random_normal": random_normal,
    "random_uniform": random_uniform,
    "truncated_normal": truncated_normal_initializer,
    "variance_scaling": variance_scaling,
    "constant": constant,
    "identity": identity,
    "zeros": _fixed(zeros),
    "ones": _fixed(ones),
}

INITIALIZERS: tuple[str, ...] = tuple(_FACTORIES)


def get_initializer(spec: str | dict[str, Any] | Initializer) -> Initializer:
    """Look up an initializer by its Keras name, build one from a mapping, or pass a callable.

    Args:
        spec: one of INITIALIZERS (with Keras's defaults), a mapping {"type": name, **arguments}
            with Keras's argument names, or a function (shape, rng) -> array.

    Returns:
        The function (shape, rng) -> float32 array.

    Raises:
        ValueError: for an unknown name (listing the valid ones), an unknown argument or a bad
            value.

    Example:
        w = get_initializer("he_normal")((3, 3, 1, 32), np.random.default_rng(0))
        v = get_initializer({"type": "variance_scaling", "scale": 2.0, "mode": "fan_out"})
    """
    if callable(spec):
        return spec
    kwargs: dict[str, Any] = {}
    name: Any = spec
    if isinstance(spec, dict):
        kwargs = {k: v for k, v in spec.items() if k != "type"}
        name = spec.get("type")
    if not (isinstance(name, str) and name.lower() in _FACTORIES):
        raise ValueError(
            f"unknown initializer {name!r}; expected one of: {', '.join(INITIALIZERS)}")
    factory = _FACTORIES[name.lower()]
    try:
        return factory(**kwargs)
    except TypeError:
        allowed = [p for p in inspect.signature(factory).parameters]
        unknown = sorted(set(kwargs) - set(allowed))
        raise ValueError(
            f"initializer {name.lower()!r} takes {', '.join(allowed) or 'no arguments'}, "
            f"got {', '.join(unknown) or kwargs}"
        ) from None
