"""The monitored quantity: which way is better for a logged name, and the one comparison rule
("did the monitored value improve?") that early stopping, reduce_on_plateau and best-checkpoint
saving share. The config's checks ask infer_mode too, so this module imports no more than errors.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from dlcli.errors import DlcliError

_MIN_SUFFIXES = ("mse", "mae", "rmse")
_MAX_NAMES = ("accuracy", "top_k_accuracy", "precision", "recall", "f1", "r2")


def infer_mode(name: str) -> Literal["min", "max"] | None:
    """Whether a monitored value should go down ("min") or up ("max"); None when unknown.

    Example:
        infer_mode("val_loss") == "min"; infer_mode("val_accuracy") == "max"
    """
    base = name.removeprefix("val_")
    if "loss" in base or base.endswith(_MIN_SUFFIXES):
        return "min"
    if base.endswith(_MAX_NAMES):
        return "max"
    return None


class MonitorError(DlcliError, ValueError):
    """The monitored quantity is not in the epoch's logs."""


def resolve_mode(monitor: str, mode: str) -> str:
    """"min" or "max" for `monitor`; "auto" asks infer_mode."""
    if mode in ("min", "max"):
        return mode
    if mode != "auto":
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    inferred = infer_mode(monitor)
    if inferred is None:
        raise ValueError(
            f"cannot tell whether '{monitor}' should be minimized or maximized; "
            "set mode: min or mode: max"
        )
    return inferred


class Monitor:
    """Tracks the best value of one logged quantity (Keras's monitor_op with min_delta).

    In "min" mode a value improves on a reference when value + min_delta < reference, in "max"
    mode when value - min_delta > reference (min_delta is taken as its absolute value). NaN never
    improves.

    Args:
        monitor: the log name, e.g. "val_loss".
        mode: "min", "max" or "auto" (resolved from the name).
        min_delta: smallest change that counts as an improvement.
    """

    def __init__(self, monitor: str, mode: str = "auto", min_delta: float = 0.0) -> None:
        self.monitor = monitor
        self.mode = resolve_mode(monitor, mode)
        self.min_delta = abs(float(min_delta))
        self.best = self.worst()

    def worst(self) -> float:
        """The starting best: +inf for min, -inf for max."""
        return math.inf if self.mode == "min" else -math.inf

    def value(self, logs: dict[str, Any]) -> float:
        """The monitored value from an epoch's logs; MonitorError naming the keys if missing."""
        if self.monitor not in logs or logs[self.monitor] is None:
            raise MonitorError(
                f"monitored quantity '{self.monitor}' is not in the epoch logs; "
                f"available: {', '.join(sorted(logs))}"
            )
        return float(logs[self.monitor])

    def is_better(self, value: float, reference: float) -> bool:
        """Whether `value` improves on `reference` by more than min_delta."""
        if self.mode == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def improved(self, value: float) -> bool:
        """True when `value` beats the best so far; the best then becomes `value`."""
        if self.is_better(value, self.best):
            self.best = float(value)
            return True
        return False

    def reset(self) -> None:
        self.best = self.worst()

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state (an infinite best is stored as None)."""
        return {"best": self.best if math.isfinite(self.best) else None, "mode": self.mode}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("mode", self.mode) != self.mode:
            raise ValueError(
                f"saved monitor state for '{self.monitor}' is in mode {state['mode']!r}, "
                f"this one is {self.mode!r}"
            )
        best = state.get("best")
        self.best = self.worst() if best is None else float(best)
