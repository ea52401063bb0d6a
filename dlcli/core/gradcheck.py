"""The one shared gradient check: analytic backward against central differences in float64."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from dlcli.core.tensor import Tensor


def numerical_grad(
    f: Callable[[], float], x: np.ndarray, eps: float = 1e-6
) -> np.ndarray:
    """Central differences of the scalar f() with respect to x, perturbed in place."""
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = f()
        flat[i] = old - eps
        minus = f()
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * eps)
    return g


def check_grad(
    fn: Callable[..., Tensor],
    inputs: Sequence[np.ndarray],
    *,
    wrt: Sequence[int] | None = None,
    eps: float = 1e-6,
    # every correct gradient in the tests is within 5e-8 of central differences in float64
    atol: float = 1e-6,
    rtol: float = 1e-5,
    seed: int = 0,
) -> None:
    """Assert that backward of fn(*inputs) matches central differences.

    Args:
        fn: builds the output from Tensors; it may return any shape.
        inputs: arrays, converted to float64 (integer arrays are passed as constants).
        wrt: indexes of the inputs to check; all floating inputs by default.
        eps, atol, rtol: finite-difference step and tolerances.

    Raises:
        AssertionError: naming the input, the worst element and both values.

    Example:
        check_grad(lambda a, b: a * b + a, [np.random.rand(3, 2), np.random.rand(3, 2)])
    """
    arrays = [np.array(a, dtype=np.float64) if np.asarray(a).dtype.kind == "f" else np.asarray(a)
              for a in inputs]
    if wrt is None:
        wrt = [i for i, a in enumerate(arrays) if a.dtype.kind == "f"]
    # project the output on fixed random weights so every output element counts
    rng = np.random.default_rng(seed)
    probe: list[np.ndarray] = []

    def scalar(tensors: list[Tensor]) -> Tensor:
        y = fn(*tensors)
        if not probe:
            probe.append(rng.standard_normal(y.shape))
        return (y * Tensor(probe[0])).sum()

    tensors = [Tensor(a, requires_grad=i in wrt) for i, a in enumerate(arrays)]
    out = scalar(tensors)
    out.backward()
    for i in wrt:
        analytic = tensors[i].grad
        assert analytic is not None, f"input {i} got no gradient"
        assert analytic.shape == arrays[i].shape, (
            f"input {i}: gradient shape {analytic.shape} != input shape {arrays[i].shape}"
        )

        def f() -> float:
            return float(scalar([Tensor(a) for a in arrays]).data)

        numeric = numerical_grad(f, arrays[i], eps)
        err = np.abs(analytic - numeric)
        bound = atol + rtol * np.abs(numeric)
        if not np.all(err <= bound):
            k = int(np.argmax(err - bound))
            idx = np.unravel_index(k, err.shape)
            where = tuple(map(int, idx))
            raise AssertionError(
                f"gradient of input {i} (shape {arrays[i].shape}) is wrong at {where}: "
                f"backward gives {analytic[idx]:.8g}, central differences give {numeric[idx]:.8g} "
                f"(max abs error {err.max():.3g})"
            )


def check_forward(
    fn: Callable[..., Tensor], reference: Callable[..., Any], inputs: Sequence[np.ndarray],
    atol: float = 1e-6, rtol: float = 1e-5,
) -> None:
    """Assert fn(*Tensors) equals a plain numpy reference on the same arrays."""
    got = fn(*[Tensor(np.asarray(a)) for a in inputs]).data
    want = reference(*[np.asarray(a) for a in inputs])
    np.testing.assert_allclose(got, want, atol=atol, rtol=rtol)
