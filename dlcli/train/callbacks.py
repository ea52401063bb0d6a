"""Early stopping, on the comparison rule of dlcli.train.monitor.

None of this touches the model: the trainer reads `improved` / `best_epoch` and keeps the best
weights itself.
"""

from __future__ import annotations

from typing import Any

from dlcli.train.monitor import Monitor


class EarlyStopping:
    """Stop training when the monitored quantity stops improving (Keras EarlyStopping).

    Each epoch from `start_from_epoch` on: the wait counter goes up by one; if the value beats
    the best by more than min_delta it becomes the best (and `improved` is True) and the wait
    restarts, unless a `baseline` is set and not beaten. Training stops when wait >= patience
    (never at epoch 0). With restore_best_weights the trainer restores the weights of
    `best_epoch` at the end of training, whether it stopped early or not.

    Args:
        monitor: the log name to watch, e.g. "val_loss" or "val_accuracy".
        mode: "min", "max" or "auto" (resolved from the name).
        patience: epochs without improvement before stopping.
        min_delta: smallest change that counts as an improvement.
        start_from_epoch: epochs (0-based count) to ignore before monitoring starts.
        restore_best_weights: whether the trainer should restore the best epoch's weights.
        baseline: a value the monitored quantity must beat for the wait to restart.
    Example:
        >>> es = EarlyStopping(monitor="val_loss", mode="min", patience=2)
        >>> [es.on_epoch_end(e, {"val_loss": v}) for e, v in enumerate([1.0, 0.9, 0.95, 0.97])]
        [False, False, False, True]
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: str = "auto",
        patience: int = 0,
        min_delta: float = 0.0,
        start_from_epoch: int = 0,
        restore_best_weights: bool = False,
        baseline: float | None = None,
    ) -> None:
        if patience < 0:
            raise ValueError(f"patience must be >= 0, got {patience}")
        self.tracker = Monitor(monitor, mode, min_delta)
        self.monitor = monitor
        self.mode = self.tracker.mode
        self.patience = int(patience)
        self.min_delta = self.tracker.min_delta
        self.start_from_epoch = int(start_from_epoch)
        self.restore_best_weights = bool(restore_best_weights)
        self.baseline = None if baseline is None else float(baseline)
        self.wait = 0
        self.stopped_epoch = 0
        self.best_epoch: int | None = None  # None until an epoch has been monitored
        self.improved = False  # whether the last epoch became best_epoch

    @property
    def best(self) -> float:
        return self.tracker.best

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> bool:
        """Record 0-based `epoch`'s logs; return True when training should stop."""
        current = self.tracker.value(logs)
        self.improved = False
        if epoch < self.start_from_epoch:
            return False
        if self.best_epoch is None:
            # Keras keeps the first monitored epoch's weights even if nothing ever improves
            self.best_epoch = epoch
            self.improved = True
        self.wait += 1
        if self.tracker.improved(current):
            self.best_epoch = epoch
            self.improved = True
            # restart the wait only when both the previous best and the baseline are beaten
            if self.baseline is None or self.tracker.is_better(current, self.baseline):
                self.wait = 0
            return False
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state, so a resumed run stops exactly where the original would have."""
        return {
            "monitor": self.tracker.state_dict(),
            "wait": self.wait,
            "stopped_epoch": self.stopped_epoch,
            "best_epoch": self.best_epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tracker.load_state_dict(state["monitor"])
        self.wait = int(state["wait"])
        self.stopped_epoch = int(state["stopped_epoch"])
        best_epoch = state["best_epoch"]
        self.best_epoch = None if best_epoch is None else int(best_epoch)
        self.improved = False
