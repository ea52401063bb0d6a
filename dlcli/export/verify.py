"""Check an exported ONNX file against dlcli's own forward pass, on the same raw inputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

TOLERANCE = 1e-4  # max abs difference on probabilities


@dataclass
class Verification:
    """How the ONNX outputs compare with dlcli's on `samples` inputs."""

    samples: int
    source: str  # "the test split of ..." or "random inputs in the data's range"
    max_abs_diff: float
    tolerance: float
    agreement: float | None  # share of equal predicted classes (classification)

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.max_abs_diff)) and self.max_abs_diff <= self.tolerance

    def describe(self) -> str:
        agree = "" if self.agreement is None else f", same class for {self.agreement:.2%}"
        return (f"max abs difference {self.max_abs_diff:.3g} (tolerance {self.tolerance:.3g}) "
                f"on {self.samples} {self.source}{agree}")


def verification_inputs(
    cfg: Any, preprocessing: dict[str, Any], n: int, data_dir: str | None, seed: int = 0,
) -> tuple[np.ndarray, str]:
    """Raw inputs to compare on: the first n of the config's test (or validation, or train)
    split when the data can be loaded, else random inputs in the range the data had."""
    from dlcli.data import Preprocessor, load_splits
    from dlcli.errors import DlcliError
    from dlcli.train.losses import LossSpec

    shape = tuple(cfg.model.input_shape)
    prep = Preprocessor.from_dict(preprocessing)
    try:
        s = load_splits(cfg.data, cfg.seed, shape, data_dir=data_dir,
                        task=LossSpec.from_config(cfg.loss).task)
        for name, x in (("test", s.x_test), ("validation", s.x_val), ("train", s.x_train)):
            if x is not None and len(x):
                # the splits come preprocessed with statistics refitted on the same train split;
                # undo that to get the raw values back
                raw = s.preprocessor.invert(x[:n])
                return raw.astype(np.float32), f"{name} samples of {s.source}"
    except DlcliError:
        pass
    rng = np.random.default_rng(seed)
    size = (n, *shape)
    mode = prep.mode
    if mode == "none":
        raw = rng.standard_normal(size)
    elif mode == "standardize":
        raw = rng.standard_normal(size) * prep.scale + prep.offset
    else:
        raw = rng.random(size) * prep.scale + prep.offset
    described = "random inputs in the data's range (the data could not be loaded)"
    return raw.astype(np.float32), described


def compare(reference: np.ndarray, exported: np.ndarray, probabilities: bool,
            samples: int, source: str) -> Verification:
    """Max abs difference; for outputs that are not probabilities the tolerance scales with
    their magnitude (float32 rounding grows with it)."""
    diff = float(np.max(np.abs(reference.astype(np.float64) - exported))) if reference.size else 0.0
    if not np.isfinite(exported).all() or not np.isfinite(reference).all():
        diff = float("inf")
    tol = TOLERANCE if probabilities else TOLERANCE * max(1.0, float(np.max(np.abs(reference))))
    agreement = None
    if probabilities and reference.ndim == 2 and reference.shape[1] > 1:
        agreement = float(np.mean(reference.argmax(1) == exported.argmax(1)))
    return Verification(samples, source, diff, tol, agreement)
