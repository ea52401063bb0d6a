"""Per-epoch learning-rate schedules: the trainer sets `optimizer.learning_rate = lr_at(epoch)`
at the start of each epoch (epoch is 0-based) and calls `on_epoch_end(epoch, logs)` after it.

Step-count arguments are in epochs (Keras counts optimizer steps; here one "step" is an epoch).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from dlcli.train.monitor import Monitor


class Schedule:
    """Constant learning rate; the base of every schedule."""

    type: ClassVar[str] = "constant"

    def __init__(self, base_lr: float) -> None:
        if not base_lr >= 0:
            raise ValueError(f"learning rate must be >= 0, got {base_lr}")
        self.base_lr = float(base_lr)

    def lr_at(self, epoch: int) -> float:
        """The learning rate for 0-based `epoch`, used for the whole epoch."""
        return self.base_lr

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        """Observe the epoch's logs (only reduce_on_plateau reacts)."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state; empty for schedules that are a pure function of the epoch."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()` (nothing to restore for pure schedules)."""
        return None


class StepDecay(Schedule):
    """lr = base * gamma ** (epoch // step_size)."""

    type = "step"

    def __init__(self, base_lr: float, step_size: int, gamma: float = 0.1) -> None:
        super().__init__(base_lr)
        if step_size < 1:
            raise ValueError(f"step_size must be >= 1 epoch, got {step_size}")
        self.step_size = int(step_size)
        self.gamma = float(gamma)

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class ExponentialDecay(Schedule):
    """Keras ExponentialDecay over epochs: base * decay_rate ** (epoch / decay_steps)
    (the exponent floored when staircase)."""

    type = "exponential"

    def __init__(
        self, base_lr: float, decay_rate: float, decay_steps: int = 1, staircase: bool = False
    ) -> None:
        super().__init__(base_lr)
        if decay_steps < 1:
            raise ValueError(f"decay_steps must be >= 1 epoch, got {decay_steps}")
        if not decay_rate > 0:
            raise ValueError(f"decay_rate must be > 0, got {decay_rate}")
        self.decay_rate = float(decay_rate)
        self.decay_steps = int(decay_steps)
        self.staircase = bool(staircase)

    def lr_at(self, epoch: int) -> float:
        p = epoch / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.base_lr * self.decay_rate**p


class CosineDecay(Schedule):
    """Linear warmup, then cosine decay from base to alpha * base (Keras CosineDecay per epoch).

    Warmup epoch e < W uses base * (e + 1) / (W + 1), a straight line from near 0 that reaches
    base at epoch W, where the cosine starts. Then with d = min(epoch - W, decay_epochs):
    lr = base * (alpha + (1 - alpha) * 0.5 * (1 + cos(pi * d / decay_epochs))).
    decay_epochs None means the rest of training after warmup (epochs - W, at least 1).
    """

    type = "cosine"

    def __init__(
        self,
        base_lr: float,
        epochs: int,
        decay_epochs: int | None = None,
        alpha: float = 0.0,
        warmup_epochs: int = 0,
    ) -> None:
        super().__init__(base_lr)
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
        if decay_epochs is not None and decay_epochs < 1:
            raise ValueError(f"decay_epochs must be >= 1, got {decay_epochs}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.warmup_epochs = int(warmup_epochs)
        self.decay_epochs = int(decay_epochs or max(epochs - self.warmup_epochs, 1))
        self.alpha = float(alpha)

    def lr_at(self, epoch: int) -> float:
        w = self.warmup_epochs
        if epoch < w:
            return self.base_lr * (epoch + 1) / (w + 1)
        d = min(epoch - w, self.decay_epochs)
        cosine = 0.5 * (1.0 + math.cos(math.pi * d / self.decay_epochs))
        return self.base_lr * (self.alpha + (1.0 - self.alpha) * cosine)


class ReduceOnPlateau(Schedule):
    """Keras ReduceLROnPlateau: after `patience` epochs without improvement of `monitor`
    (by more than min_delta), lr = max(lr * factor, min_lr), then wait `cooldown` epochs.

    mode "auto" is resolved from the monitored name by dlcli.train.monitor.infer_mode.
    """

    type = "reduce_on_plateau"

    def __init__(
        self,
        base_lr: float,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
        mode: str = "auto",
    ) -> None:
        super().__init__(base_lr)
        if not 0.0 <= factor < 1.0:
            raise ValueError(f"reduce_on_plateau needs 0 <= factor < 1, got {factor}")
        self.factor = float(factor)
        self.patience = int(patience)
        self.cooldown = int(cooldown)
        self.min_lr = float(min_lr)
        self.monitor = Monitor(monitor, mode, min_delta)
        self.lr = self.base_lr
        self.wait = 0
        self.cooldown_counter = 0

    def lr_at(self, epoch: int) -> float:
        return self.lr

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        current = self.monitor.value(logs)
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self.monitor.improved(current):
            self.wait = 0
        elif self.cooldown_counter == 0:
            self.wait += 1
            if self.wait >= self.patience and self.lr > self.min_lr:
                self.lr = max(self.lr * self.factor, self.min_lr)
                self.cooldown_counter = self.cooldown
                self.wait = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "wait": self.wait,
            "cooldown_counter": self.cooldown_counter,
            "monitor": self.monitor.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lr = float(state["lr"])
        self.wait = int(state["wait"])
        self.cooldown_counter = int(state["cooldown_counter"])
        self.monitor.load_state_dict(state["monitor"])


SCHEDULES: dict[str, type[Schedule]] = {
    cls.type: cls for cls in (Schedule, StepDecay, ExponentialDecay, CosineDecay, ReduceOnPlateau)
}


def make_schedule(cfg: dict[str, Any] | None, base_lr: float, epochs: int) -> Schedule:
    """Build a schedule from its config dict.

    Args:
        cfg: {"type": constant | step | exponential | cosine | reduce_on_plateau, plus its
            fields}, or None for constant.
        base_lr: the optimizer's configured learning rate.
        epochs: training.epochs (cosine's default decay length).
    Returns:
        The schedule; unknown type or fields raise ValueError.
    Example:
        >>> make_schedule({"type": "step", "step_size": 10, "gamma": 0.5}, 0.1, 30).lr_at(10)
        0.05
    """
    cfg = dict(cfg or {"type": "constant"})
    name = str(cfg.pop("type", "constant")).lower()
    cls = SCHEDULES.get(name)
    if cls is None:
        raise ValueError(f"unknown lr_schedule type '{name}'; valid types: {sorted(SCHEDULES)}")
    valid = {
        "constant": set(),
        "step": {"step_size", "gamma"},
        "exponential": {"decay_rate", "decay_steps", "staircase"},
        "cosine": {"decay_epochs", "alpha", "warmup_epochs"},
        "reduce_on_plateau": {
            "monitor", "factor", "patience", "min_delta", "cooldown", "min_lr", "mode"
        },
    }[name]
    unknown = sorted(set(cfg) - valid)
    if unknown:
        raise ValueError(
            f"unknown field(s) {unknown} for lr_schedule '{name}'; valid fields: {sorted(valid)}"
        )
    required = {"step": "step_size", "exponential": "decay_rate"}.get(name)
    if required is not None and cfg.get(required) is None:
        raise ValueError(f"lr_schedule '{name}' needs '{required}'")
    if name == "cosine":
        return CosineDecay(base_lr, epochs, **cfg)
    return cls(base_lr, **cfg)
