"""Weight initializers with Keras's names, fan computation and formulas.

An initializer is a function `(shape, rng) -> np.ndarray` (float32) that draws every random
number from the numpy Generator it is given, so one seed fixes all weights of a model.
"""

from __future__ import annotations

import math
from collections.abc import Callable

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
    shape: tuple[int, ...], rng: np.random.Generator, stddev: float
) -> np.ndarray:
    """Normal(0, stddev) redrawn outside two standard deviations (as tf.random.truncated_normal)."""
    z = rng.standard_normal(shape)
    bad = np.abs(z) > 2.0
    while bad.any():
        z[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(z) > 2.0
    return (z * stddev).astype(np.float32)


def _variance_scaling(scale: float, mode: str, distribution: str) -> Initializer:
    """Keras VarianceScaling: variance scale / n, n = fan_in, fan_out or their mean."""

    def init(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        fan_in, fan_out = compute_fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[mode]
        variance = scale / max(1.0, n)
        if distribution == "truncated_normal":
            return truncated_normal(shape, rng, math.sqrt(variance) / _TRUNCATED_STD)
        limit = math.sqrt(3.0 * variance)
        return rng.uniform(-limit, limit, size=shape).astype(np.float32)

    return init


def orthogonal(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Keras Orthogonal(gain=1): QR of a normal matrix with the signs of diag(R) folded into Q."""
    if len(shape) < 2:
        raise ValueError(f"the orthogonal initializer needs a shape of rank 2 or more, got {shape}")
    rows, cols = math.prod(shape[:-1]), shape[-1]
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    # without the sign fix Q would not be uniformly distributed over orthogonal matrices
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return q.reshape(shape).astype(np.float32)


def random_normal(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Keras RandomNormal(mean=0, stddev=0.05)."""
    return rng.normal(0.0, 0.05, size=shape).astype(np.float32)


def random_uniform(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Keras RandomUniform(minval=-0.05, maxval=0.05)."""
    return rng.uniform(-0.05, 0.05, size=shape).astype(np.float32)


def zeros(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    return np.zeros(shape, dtype=np.float32)


def ones(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    return np.ones(shape, dtype=np.float32)


_REGISTRY: dict[str, Initializer] = {
    "glorot_uniform": _variance_scaling(1.0, "fan_avg", "uniform"),
    "glorot_normal": _variance_scaling(1.0, "fan_avg", "truncated_normal"),
    "he_uniform": _variance_scaling(2.0, "fan_in", "uniform"),
    "he_normal": _variance_scaling(2.0, "fan_in", "truncated_normal"),
    "lecun_uniform": _variance_scaling(1.0, "fan_in", "uniform"),
    "lecun_normal": _variance_scaling(1.0, "fan_in", "truncated_normal"),
    "orthogonal": orthogonal,
    "random_normal": random_normal,
    "random_uniform": random_uniform,
    "zeros": zeros,
    "ones": ones,
}

INITIALIZERS: tuple[str, ...] = tuple(_REGISTRY)


def get_initializer(spec: str | Initializer) -> Initializer:
    """Look up an initializer by its Keras name, or pass a callable through.

    Args:
        spec: one of INITIALIZERS, or a function (shape, rng) -> array.

    Returns:
        The function (shape, rng) -> float32 array.

    Raises:
        ValueError: for an unknown name, listing the valid ones.

    Example:
        w = get_initializer("he_normal")((3, 3, 1, 32), np.random.default_rng(0))
    """
    if callable(spec):
        return spec
    if isinstance(spec, str) and spec.lower() in _REGISTRY:
        return _REGISTRY[spec.lower()]
    raise ValueError(f"unknown initializer {spec!r}; expected one of: {', '.join(INITIALIZERS)}")
