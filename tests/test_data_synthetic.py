"""Synthetic datasets: shapes, labels, geometry and determinism."""

import numpy as np
import pytest

from dlcli.data.synthetic import SYNTHETIC, make_synthetic
from dlcli.errors import DataError

CLASSIFIERS = {"spirals": 2, "moons": 2, "circles": 2, "xor": 2, "blobs": 3}


@pytest.mark.parametrize("name, k", CLASSIFIERS.items())
def test_classification_shapes_and_labels(name, k):
    d = make_synthetic(name, n_samples=301, noise=0.1, seed=3)
    assert d.x.shape == (301, 2) and d.x.dtype == np.float32
    assert d.y.shape == (301,) and d.y.dtype == np.int64
    assert d.task == "classification"
    assert d.class_names == [f"class_{i}" for i in range(k)]
    counts = np.bincount(d.y, minlength=k)
    assert len(counts) == k and counts.min() > 0
    if name != "xor":  # xor labels follow uniformly drawn points, so are only roughly balanced
        assert counts.max() - counts.min() <= 1
    assert np.all(np.isfinite(d.x))


def test_regression_shapes():
    d = make_synthetic("regression", n_samples=50, seed=1)
    assert d.x.shape == (50, 1) and d.y.shape == (50, 1)
    assert d.x.dtype == d.y.dtype == np.float32
    assert d.task == "regression" and d.class_names is None
    d3 = make_synthetic("regression", n_samples=40, n_features=3, seed=1)
    assert d3.x.shape == (40, 3) and d3.y.shape == (40, 1)


def test_regression_is_smooth_function_plus_noise():
    clean = make_synthetic("regression", n_samples=200, noise=0.0, seed=5, n_features=2)
    x = clean.x.astype(np.float64)
    expected = (np.sin(x) + 0.1 * x**2).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(clean.y, expected, rtol=1e-5, atol=1e-5)
    noisy = make_synthetic("regression", n_samples=200, noise=0.5, seed=5, n_features=2)
    np.testing.assert_array_equal(noisy.x, clean.x)  # noise only on the target
    assert 0.3 < np.std(noisy.y - clean.y) < 0.7


@pytest.mark.parametrize("name", list(SYNTHETIC))
def test_deterministic_per_seed(name):
    a = make_synthetic(name, n_samples=100, seed=11)
    b = make_synthetic(name, n_samples=100, seed=11)
    c = make_synthetic(name, n_samples=100, seed=12)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.x, c.x)


def test_samples_are_shuffled():
    d = make_synthetic("moons", n_samples=100, seed=0)
    assert 0 < d.y[:50].sum() < 50  # not all of one class first


def test_geometry_without_noise():
    moons = make_synthetic("moons", n_samples=100, noise=0.0, seed=0)
    outer = moons.x[moons.y == 0].astype(np.float64)
    np.testing.assert_allclose(np.hypot(outer[:, 0], outer[:, 1]), 1.0, atol=1e-6)
    circles = make_synthetic("circles", n_samples=100, noise=0.0, seed=0)
    r = np.hypot(circles.x[:, 0], circles.x[:, 1])
    np.testing.assert_allclose(r[circles.y == 0], 1.0, atol=1e-6)
    np.testing.assert_allclose(r[circles.y == 1], 0.5, atol=1e-6)
    xor = make_synthetic("xor", n_samples=200, noise=0.0, seed=0)
    np.testing.assert_array_equal(xor.y, (xor.x[:, 0] * xor.x[:, 1] < 0).astype(np.int64))
    spirals = make_synthetic("spirals", n_samples=90, noise=0.0, seed=0, n_classes=3)
    assert np.hypot(spirals.x[:, 0], spirals.x[:, 1]).max() <= 1.0 + 1e-6


def test_n_classes_and_n_features():
    s = make_synthetic("spirals", n_samples=90, seed=0, n_classes=3)
    assert set(s.y.tolist()) == {0, 1, 2} and len(s.class_names) == 3
    b = make_synthetic("blobs", n_samples=80, seed=0, n_classes=4, n_features=5)
    assert b.x.shape == (80, 5) and np.bincount(b.y).tolist() == [20, 20, 20, 20]
    # With little noise, each blob sits close to its own center.
    b = make_synthetic("blobs", n_samples=300, noise=0.01, seed=2)
    for c in range(3):
        assert b.x[b.y == c].std(axis=0).max() < 0.05


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(name="moons", n_classes=3), "always has 2 classes"),
        (dict(name="spirals", n_classes=1), "at least 2 classes"),
        (dict(name="regression", n_classes=2), "has no classes"),
        (dict(name="xor", n_features=3), "is 2-D"),
        (dict(name="blobs", n_features=0), "at least 1"),
        (dict(name="blobs", n_samples=2), "at least 3 samples"),
        (dict(name="moons", noise=-1.0), "noise"),
        (dict(name="swirl"), "unknown synthetic dataset"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(DataError, match=message):
        make_synthetic(**kwargs)
