"""Preparing arrays for the model: splits, checks, shapes and input normalization.

Normalization statistics are per feature, i.e. per index of the last axis, over every other
axis: per column for tables, per channel for channels-last images (as BatchNorm does).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from dlcli.core.backend import get_array_module
from dlcli.errors import DataError

MODES = ("scale", "standardize", "none")
_CHUNK = 4096  # samples per chunk when summing squares, to bound float64 temporaries


class Preprocessor:
    """Input normalization fit on the training split: apply(x) = (x - offset) / scale, float32.

    Modes: "scale" (uint8 data / 255; other data min-max scaled to [0, 1] with the train
    min and max), "standardize" (train mean and std; std 0 -> 1), "none" (only cast).

    Example:
        >>> p = Preprocessor("standardize").fit(x_train)
        >>> Preprocessor.from_dict(p.to_dict()).apply(x_test)  # same numbers, e.g. in predict
    """

    def __init__(
        self,
        mode: str = "none",
        offset: list[float] | None = None,
        scale: list[float] | None = None,
    ) -> None:
        if mode not in MODES:
            raise DataError(f"data.normalize must be one of {', '.join(MODES)}, got {mode!r}")
        if (offset is None) != (scale is None) or (
            offset is not None and len(offset) != len(scale)
        ):
            raise DataError("preprocessor: offset and scale must both be given, of equal length")
        self.mode = mode
        self.offset = None if offset is None else np.asarray(offset, dtype=np.float64)
        self.scale = None if scale is None else np.asarray(scale, dtype=np.float64)

    @property
    def fitted(self) -> bool:
        """True once fit (or for mode "none", which has nothing to fit)."""
        return self.mode == "none" or self.offset is not None

    def fit(self, x: np.ndarray) -> Preprocessor:
        """Compute the statistics from the training inputs; returns self."""
        x = np.asarray(x)
        if self.mode == "none":
            return self
        if x.ndim < 2 or len(x) == 0:
            raise DataError(f"cannot fit {self.mode} on inputs of shape {x.shape}")
        axes = tuple(range(x.ndim - 1))
        if self.mode == "scale" and x.dtype == np.uint8:
            offset, scale = np.zeros(1), np.full(1, 255.0)
        elif self.mode == "scale":
            lo = x.min(axis=axes).astype(np.float64)
            hi = x.max(axis=axes).astype(np.float64)
            offset, scale = lo, hi - lo
        else:
            offset, scale = _mean_std(x, axes)
        # A constant feature would divide by zero; leave it unscaled (Keras does the same).
        scale = np.where(scale > 0, scale, 1.0)
        self.offset, self.scale = offset, scale
        return self

    def apply(self, x: Any) -> Any:
        """Normalize inputs (numpy or cupy) into a new float32 array."""
        xp = get_array_module(x)
        out = xp.asarray(x).astype(np.float32)  # astype copies: the input is never changed
        if self.mode == "none":
            return out
        if self.offset is None:
            raise DataError(f"preprocessor ({self.mode}) is used before being fit")
        n = len(self.offset)
        if n != 1 and (out.ndim < 2 or out.shape[-1] != n):
            raise DataError(
                f"the preprocessor was fit on inputs with {n} features (last axis) but got "
                f"inputs of shape {tuple(out.shape)}"
            )
        out -= xp.asarray(self.offset, dtype=np.float32)
        out /= xp.asarray(self.scale, dtype=np.float32)
        return out

    def invert(self, x: np.ndarray) -> np.ndarray:
        """Raw values back from normalized ones (float64): x * scale + offset."""
        out = np.asarray(x, dtype=np.float64)
        if self.mode == "none":
            return out
        return out * self.scale + self.offset

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state, stored in checkpoints for eval and predict."""
        d: dict[str, Any] = {"mode": self.mode}
        if self.offset is not None:
            d["offset"] = [float(v) for v in self.offset]
            d["scale"] = [float(v) for v in self.scale]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessor:
        """Rebuild from to_dict() output."""
        if not isinstance(d, dict) or "mode" not in d:
            raise DataError(f"preprocessor state must be a dict with a mode, got {d!r}")
        unknown = set(d) - {"mode", "offset", "scale"}
        if unknown:
            raise DataError(f"preprocessor state has unknown keys {sorted(unknown)}")
        return cls(d["mode"], d.get("offset"), d.get("scale"))

    def __repr__(self) -> str:
        return f"Preprocessor(mode={self.mode!r}, fitted={self.fitted})"


def _mean_std(x: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and population std in float64, two passes, chunked over samples."""
    mean = x.mean(axis=axes, dtype=np.float64)
    sq = np.zeros_like(mean)
    for i in range(0, len(x), _CHUNK):
        d = x[i : i + _CHUNK].astype(np.float64) - mean
        sq += (d * d).sum(axis=axes)
    count = x.size // x.shape[-1]
    return mean, np.sqrt(sq / count)


def split_indices(
    y: np.ndarray, fraction: float, rng: np.random.Generator, stratify: bool, key: str
) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices into (kept, taken) with about `fraction` of them taken.

    Stratified: each class gives its share (largest remainders get the rounding), and a
    class keeps at least one sample in the kept part when it has two or more. When no class
    can give any sample (all singletons), falls back to an unstratified split.
    Raises DataError (naming `key`, e.g. "data.validation_split=0.2") when nothing is kept.
    """
    n = len(y)
    n_take = max(1, round(fraction * n))
    if n_take >= n:
        raise DataError(f"{key} takes {n_take} of the {n} samples and leaves none to train on")
    taken: np.ndarray | None = None
    if stratify:
        classes, inverse = np.unique(y, return_inverse=True)
        counts = np.bincount(inverse, minlength=len(classes))
        quota = n_take * counts / n
        share = np.floor(quota).astype(np.int64)
        leftover = n_take - int(share.sum())
        share[np.argsort(-(quota - share), kind="stable")[:leftover]] += 1
        share = np.minimum(share, np.maximum(counts - 1, 0))
        if share.sum() > 0:
            parts = [rng.permutation(np.flatnonzero(inverse == c))[:s] for c, s in enumerate(share)]
            taken = np.concatenate(parts)
    if taken is None:
        taken = rng.permutation(n)[:n_take]
    mask = np.zeros(n, dtype=bool)
    mask[taken] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def check_finite(
    a: np.ndarray,
    split: str,
    what: str = "inputs",
    *,
    source: str | None = None,
    where: Callable[[int], str] | None = None,
) -> None:
    """DataError when a float array holds NaN or infinite values, saying where and how many.

    Args:
        a: one row per sample.
        split: names the data in the message ("train"; "" for none).
        what: "inputs", "labels" or "targets".
        source: the file (or dataset) the rows come from, named in the message.
        where: where row i sits in that source ("line 12"); default "sample i".
    """
    if a.dtype.kind not in "fc" or len(a) == 0:
        return
    bad = ~np.isfinite(a)
    if not bad.any():
        return
    n_nan = int(np.isnan(a).sum())
    n_inf = int(bad.sum()) - n_nan
    bad_rows = np.flatnonzero(bad.reshape(len(a), -1).any(axis=1))
    first = int(bad_rows[0])
    at = where(first) if where is not None else f"sample {first}"
    subject = " ".join(w for w in ("the", split, what) if w)
    of = f" of {source}" if source else ""
    raise DataError(
        f"{subject} hold {n_nan} NaN and {n_inf} infinite values in {len(bad_rows)} of "
        f"{len(a)} samples{of} (first at {at}); remove or fill them"
    )


def check_float32_range(
    a: np.ndarray,
    split: str,
    what: str = "inputs",
    *,
    source: str | None = None,
    where: Callable[[int], str] | None = None,
) -> None:
    """DataError for finite values that float32 (what models compute in) cannot hold."""
    if a.dtype.kind != "f" or a.dtype.itemsize <= 4 or len(a) == 0:
        return
    big = np.abs(a.reshape(len(a), -1)) > np.finfo(np.float32).max
    rows = np.flatnonzero(big.any(axis=1))
    if rows.size:
        at = where(int(rows[0])) if where is not None else f"sample {int(rows[0])}"
        subject = " ".join(w for w in ("the", split, what) if w)
        of = f" of {source}" if source else ""
        raise DataError(
            f"{subject} hold values beyond float32's range (about 3.4e38) in {rows.size} of "
            f"{len(a)} samples{of} (first at {at}); rescale them"
        )


def fit_input_shape(x: np.ndarray, input_shape: tuple[int, ...], split: str) -> np.ndarray:
    """x with per-sample shape equal to input_shape, adding a trailing channel axis of 1 if
    that is the only difference; DataError naming both shapes otherwise."""
    want = tuple(int(d) for d in input_shape)
    got = tuple(x.shape[1:])
    if got == want:
        return x
    if got + (1,) == want:
        return x[..., np.newaxis]
    hint = ""
    if len(want) == 1 and math.prod(got) == math.prod(want):
        hint = (
            f"; the sizes agree ({math.prod(got)} values), so set model.input_shape to "
            f"{list(got) + [1] if len(got) == 2 else list(got)} and add a Flatten layer "
            f"before the Dense layers"
        )
    raise DataError(
        f"the {split} data has per-sample shape {list(got)} but model.input_shape is "
        f"{list(want)}{hint}"
    )


def model_inputs(x: np.ndarray, shape: tuple[int, ...], split: str) -> np.ndarray:
    """Inputs checked (numbers) and shaped as the model takes them; finiteness is checked
    when they are read, where rows can still be named by their place in the file."""
    if x.dtype.kind not in "biuf":
        raise DataError(f"the {split} inputs are not numbers (dtype {x.dtype})")
    return fit_input_shape(x, shape, split)


def normalize_inputs(preprocessor: Preprocessor, x: np.ndarray, split: str) -> np.ndarray:
    """preprocessor.apply(x), refused when float32 overflows (values near its limit)."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = preprocessor.apply(x)
    if not np.isfinite(out).all():
        raise DataError(
            f"the {split} inputs overflow float32 after normalize: {preprocessor.mode} (their "
            f"values come close to float32's limit, about 3.4e38); rescale them"
        )
    return out
