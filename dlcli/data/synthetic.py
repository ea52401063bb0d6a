"""Synthetic datasets, generated from a seed: spirals, moons, circles, xor, blobs, regression.

`noise` is the standard deviation of Gaussian noise added to each coordinate (to the target,
for regression), as in scikit-learn's make_moons / make_circles. Samples come shuffled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dlcli.errors import DataError


@dataclass
class SyntheticData:
    """Generated samples: float32 x (N, F); int64 labels (N,) or float32 targets (N, 1)."""

    x: np.ndarray
    y: np.ndarray
    class_names: list[str] | None
    task: str  # "classification" | "regression"


def _counts(n: int, k: int) -> list[int]:
    """n samples spread over k classes as evenly as possible."""
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def _spirals(n: int, noise: float, rng: np.random.Generator, k: int, d: int) -> tuple:
    xs, ys = [], []
    for c, m in enumerate(_counts(n, k)):
        r = np.linspace(0.05, 1.0, m)
        theta = 2 * np.pi * c / k + 3 * np.pi * r  # one and a half turns per arm
        xs.append(np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1))
        ys.append(np.full(m, c))
    x = np.concatenate(xs)
    return x + noise * rng.standard_normal(x.shape), np.concatenate(ys)


def _moons(n: int, noise: float, rng: np.random.Generator, k: int, d: int) -> tuple:
    n_out, n_in = _counts(n, 2)
    t_out, t_in = np.linspace(0, np.pi, n_out), np.linspace(0, np.pi, n_in)
    x = np.concatenate(
        [
            np.stack([np.cos(t_out), np.sin(t_out)], axis=1),
            np.stack([1 - np.cos(t_in), 0.5 - np.sin(t_in)], axis=1),
        ]
    )
    y = np.repeat([0, 1], [n_out, n_in])
    return x + noise * rng.standard_normal(x.shape), y


def _circles(n: int, noise: float, rng: np.random.Generator, k: int, d: int) -> tuple:
    n_out, n_in = _counts(n, 2)
    # endpoint=False so the first and last point of a circle do not coincide.
    t_out = np.linspace(0, 2 * np.pi, n_out, endpoint=False)
    t_in = np.linspace(0, 2 * np.pi, n_in, endpoint=False)
    x = np.concatenate(
        [
            np.stack([np.cos(t_out), np.sin(t_out)], axis=1),
            0.5 * np.stack([np.cos(t_in), np.sin(t_in)], axis=1),
        ]
    )
    y = np.repeat([0, 1], [n_out, n_in])
    return x + noise * rng.standard_normal(x.shape), y


def _xor(n: int, noise: float, rng: np.random.Generator, k: int, d: int) -> tuple:
    x = rng.uniform(-1, 1, size=(n, 2))
    y = ((x[:, 0] > 0) != (x[:, 1] > 0)).astype(np.int64)  # 1 where the signs differ
    return x + noise * rng.standard_normal(x.shape), y


def _blobs(n: int, noise: float, rng: np.random.Generator, k: int, d: int) -> tuple:
    # scikit-learn's defaults (centers in (-10, 10), std 1) scaled by 1/10: std = noise.
    centers = rng.uniform(-1, 1, size=(k, d))
    y = np.repeat(np.arange(k), _counts(n, k))
    return centers[y] + noise * rng.standard_normal((n, d)), y


def _regression(n: int, noise: float, rng: np.random.Generator, k: int, d: int) -> tuple:
    x = rng.uniform(-3, 3, size=(n, d))
    y = (np.sin(x) + 0.1 * x**2).sum(axis=1, keepdims=True)
    return x, y + noise * rng.standard_normal(y.shape)


_Gen = Callable[[int, float, np.random.Generator, int, int], tuple]
# name -> (generator, default n_classes or None if fixed/none, classes fixed?, default n_features,
# features fixed?)
SYNTHETIC: dict[str, tuple[_Gen, int | None, bool, int, bool]] = {
    "spirals": (_spirals, 2, False, 2, True),
    "moons": (_moons, 2, True, 2, True),
    "circles": (_circles, 2, True, 2, True),
    "xor": (_xor, 2, True, 2, True),
    "blobs": (_blobs, 3, False, 2, False),
    "regression": (_regression, None, True, 1, False),
}


def make_synthetic(
    name: str,
    n_samples: int = 1000,
    noise: float = 0.1,
    seed: int = 42,
    n_classes: int | None = None,
    n_features: int | None = None,
) -> SyntheticData:
    """Generate a synthetic dataset.

    Args:
        name: spirals, moons, circles, xor, blobs or regression.
        n_samples: total samples (classes get equal shares, the remainder going to the first).
        noise: std of the Gaussian noise.
        seed: the same seed gives the same data.
        n_classes: spirals (arms, default 2) and blobs (default 3); others have theirs fixed.
        n_features: blobs (default 2) and regression (default 1); others are 2-D.
    Example:
        >>> make_synthetic("moons", n_samples=200, seed=0).x.shape
        (200, 2)
    """
    if name not in SYNTHETIC:
        raise DataError(f"unknown synthetic dataset {name!r}; known: {', '.join(SYNTHETIC)}")
    gen, default_k, k_fixed, default_d, d_fixed = SYNTHETIC[name]
    if n_classes is not None:
        if default_k is None:
            raise DataError(f"data.n_classes: {name} is a regression dataset, it has no classes")
        if k_fixed and n_classes != default_k:
            raise DataError(
                f"data.n_classes: {name} always has {default_k} classes, got {n_classes}"
            )
        if n_classes < 2:
            raise DataError(f"data.n_classes: {name} needs at least 2 classes, got {n_classes}")
    if n_features is not None:
        if d_fixed and n_features != default_d:
            raise DataError(f"data.n_features: {name} is {default_d}-D, got {n_features}")
        if n_features < 1:
            raise DataError(f"data.n_features must be at least 1, got {n_features}")
    k = n_classes if n_classes is not None else (default_k or 1)
    d = n_features if n_features is not None else default_d
    if n_samples < max(k, 1):
        raise DataError(f"data.n_samples: {name} needs at least {k} samples, got {n_samples}")
    if noise < 0:
        raise DataError(f"data.noise must be >= 0, got {noise}")

    # Mask the seed: default_rng rejects negative seeds.
    rng = np.random.default_rng(seed & 0xFFFF_FFFF_FFFF_FFFF)
    x, y = gen(n_samples, float(noise), rng, k, d)
    order = rng.permutation(n_samples)
    x = x[order].astype(np.float32)
    if default_k is None:
        return SyntheticData(x, y[order].astype(np.float32), None, "regression")
    names = [f"class_{i}" for i in range(k)]
    return SyntheticData(x, y[order].astype(np.int64), names, "classification")
