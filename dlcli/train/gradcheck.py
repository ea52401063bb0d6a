"""`dlcli gradcheck`: every weight's analytic gradient against central differences, for a config.

"Use the slow and easy numerical gradient to check the fast and error-prone analytical one."
The model is built in float64 (its weights moved by N(0, 0.01) noise, off the ReLU kinks
that zero biases on blank pixels sit on) and run in training mode on a small batch (the
config's data, or random inputs of the right shape) with the training loss (data loss plus
regularization).
Dropout and augmentation draw the same numbers on every evaluation, so the loss is one
function of the weights. Large weights are checked on a sample of their entries, always
including the entry with the largest gradient. An entry that disagrees is measured again with
smaller steps (a kink within one step spoils that step, a wrong backward spoils every step).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dlcli.config.schema import Config
from dlcli.core import Tensor
from dlcli.errors import DlcliError
from dlcli.nn.from_config import build_model
from dlcli.train.losses import LossSpec

TOLERANCE = 1e-6  # relative difference ||a - n|| / (||a|| + ||n||) in float64
# A gradient that is truly zero (a bias right before BatchNorm) leaves only rounding noise,
# about 1e-16 / eps per entry, in the numerical one; below this absolute difference it passes.
ABS_TOLERANCE = 1e-8


@dataclass
class WeightCheck:
    """One weight's comparison."""

    layer: str
    weight: str
    shape: tuple[int, ...]
    checked: int  # entries compared
    max_abs_error: float
    relative: float  # ||analytic - numeric|| / (||analytic|| + ||numeric||) over those entries

    diff: float = 0.0  # ||analytic - numeric||

    @property
    def passed(self) -> bool:
        return bool(self.relative <= TOLERANCE or self.diff <= ABS_TOLERANCE)


@dataclass
class GradcheckReport:
    data: str
    samples: int
    checks: list[WeightCheck] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)


def _batch(cfg: Config, loss: LossSpec, n: int, units: int, data_dir: str | None,
           seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    from dlcli.data import check_labels, load_splits

    try:
        s = load_splits(cfg.data, cfg.seed, tuple(cfg.model.input_shape), data_dir=data_dir,
                        task=loss.task)
    except DlcliError:
        s = None
    if s is not None:
        # the ops do not check labels: out-of-range ones would give zero loss rows silently
        check_labels(s.y_train, units, loss.name, source=s.source)
        return s.x_train[:n], s.y_train[:n], f"{min(n, len(s.x_train))} train samples of {s.source}"
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *cfg.model.input_shape))
    if loss.task == "regression":
        y = rng.standard_normal((n, units))
    elif loss.binary:
        y = rng.integers(0, 2, (n, units)).astype(np.float64)
    else:
        y = rng.integers(0, units, n)
    return x, y, f"{n} random inputs (the data could not be loaded)"


def gradcheck(cfg: Config, *, batch_size: int = 4, entries: int = 12, eps: float = 1e-6,
              data_dir: str | None = None, seed: int = 0) -> GradcheckReport:
    """Compare every weight's backward gradient with central differences (see module doc).

    Args:
        batch_size: samples in the batch.
        entries: entries checked per weight at most (all of a smaller weight).
        eps: the finite-difference step.
    """
    model = build_model(cfg)
    jitter = np.random.default_rng(seed + 1)
    for w in model.weights:
        w.data = w.data.astype(np.float64)
        if w.requires_grad:
            # zero biases on zero inputs (image backgrounds) put every ReLU exactly on its kink,
            # where no derivative exists; a small random move takes the check off the kinks
            w.data += jitter.normal(0.0, 0.01, w.shape)
    loss = LossSpec.from_config(cfg.loss)
    units = int(model.output_shape[-1])
    x, y, described = _batch(cfg, loss, batch_size, units, data_dir, seed)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    if y.dtype.kind == "f":
        y = y.astype(np.float64)

    def total() -> Tensor:
        # the same random numbers (dropout masks, augmentation) for every evaluation
        model.set_rng(np.random.default_rng(seed))
        for layer in model.walk():
            own = getattr(layer, "seed", None)
            if own is not None:
                layer.rng = np.random.default_rng(own)
        value, _ = loss(model, Tensor(x), y, training=True)
        reg = model.regularization_loss()
        return value if reg is None else value + reg

    for w in model.weights:
        w.grad = None
    total().backward()
    report = GradcheckReport(described, len(x))
    rng = np.random.default_rng(seed)
    for layer in model.walk():
        for name, w in layer.params.items():
            if not w.requires_grad:
                continue  # moving statistics are not learned by gradient
            analytic = np.zeros(w.shape) if w.grad is None else np.asarray(w.grad)
            flat = w.data.reshape(-1)
            picks = np.arange(flat.size)
            if flat.size > entries:
                largest = int(np.argmax(np.abs(analytic).reshape(-1)))
                others = rng.choice(flat.size, entries - 1, replace=False)
                picks = np.unique(np.concatenate([[largest], others]))
            a = analytic.reshape(-1)[picks]
            numeric = np.array([_central(total, flat, i, eps) for i in picks])
            # A ReLU or max-pool kink closer than eps to the point spoils one step size but not
            # all; a wrong backward disagrees at every step. So an entry that disagrees is
            # measured again with smaller steps and its closest estimate kept.
            for k in np.flatnonzero(np.abs(a - numeric) > 1e-7 * (np.abs(a) + np.abs(numeric))
                                    + ABS_TOLERANCE):
                for step in (eps / 10, eps / 100):
                    again = _central(total, flat, picks[k], step)
                    if abs(again - a[k]) < abs(numeric[k] - a[k]):
                        numeric[k] = again
            diff = float(np.linalg.norm(a - numeric))
            scale = float(np.linalg.norm(a) + np.linalg.norm(numeric))
            rel = diff / scale if scale > 0 else 0.0
            report.checks.append(WeightCheck(layer.name, name, tuple(w.shape), len(picks),
                                             float(np.max(np.abs(a - numeric))), rel, diff))
    return report


def _central(total: Any, flat: np.ndarray, i: int, step: float) -> float:
    """(f(w + step) - f(w - step)) / 2 step for entry i of the weight `flat` views."""
    old = flat[i]
    flat[i] = old + step
    plus = float(total().data)
    flat[i] = old - step
    minus = float(total().data)
    flat[i] = old
    return (plus - minus) / (2 * step)


def describe(check: WeightCheck) -> dict[str, Any]:
    """JSON-able row."""
    return {"layer": check.layer, "weight": check.weight, "shape": list(check.shape),
            "checked": check.checked, "max_abs_error": check.max_abs_error,
            "relative_error": check.relative, "passed": check.passed}
