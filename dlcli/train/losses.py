"""The loss of a config, fused with the model's last activation where numerics need it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dlcli.core import Tensor, ops
from dlcli.core.backend import get_array_module

CLASSIFICATION_LOSSES = {
    "categorical_crossentropy",
    "sparse_categorical_crossentropy",
    "binary_crossentropy",
}
ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error"}


@dataclass(frozen=True)
class LossSpec:
    """A loss by name plus its options; knows whether it can work from logits."""

    name: str
    from_logits: bool = False
    delta: float = 1.0

    @classmethod
    def from_config(cls, loss: Any) -> LossSpec:
        if isinstance(loss, str):
            return cls(ALIASES.get(loss, loss))
        d = loss if isinstance(loss, dict) else loss.model_dump()
        name = ALIASES.get(d["type"], d["type"])
        return cls(name, bool(d.get("from_logits") or False), float(d.get("delta") or 1.0))

    @property
    def task(self) -> str:
        return "classification" if self.name in CLASSIFICATION_LOSSES else "regression"

    @property
    def binary(self) -> bool:
        return self.name == "binary_crossentropy"

    def n_classes(self, units: int) -> int:
        """Classes the metrics count: 2 for a sigmoid (binary) output, else the output units."""
        return 2 if self.binary else units

    def fused_activation(self) -> str | None:
        """The final activation this loss absorbs: softmax or sigmoid, computed from logits."""
        if self.name in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
            return "softmax"
        if self.binary:
            return "sigmoid"
        return None

    def __call__(self, model: Any, x: Tensor, y: Any, training: bool) -> tuple[Tensor, Any]:
        """Return (mean loss over the batch, model outputs as probabilities or values)."""
        fused = self.fused_activation()
        last = getattr(model.layers[-1], "activation", None)
        if fused is not None and (last == fused or (self.from_logits and last in (None, "linear"))):
            logits = model.logits(x, training=training)
            if fused == "softmax":
                return ops.softmax_cross_entropy(logits, y), ops.softmax(logits.detach()).data
            yb = y.reshape(logits.shape).astype(logits.dtype)
            return ops.sigmoid_binary_crossentropy(logits, yb), ops.sigmoid(logits.detach()).data
        out = model(x, training=training)
        if self.name in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
            xp = get_array_module(out.data)
            onehot = y if y.ndim == 2 else xp.eye(out.shape[-1], dtype=out.dtype)[y]
            return ops.categorical_crossentropy(out, onehot), out.data
        if self.binary:
            return ops.binary_crossentropy(out, y.reshape(out.shape).astype(out.dtype)), out.data
        target = y.reshape(out.shape).astype(out.dtype)
        if self.name == "mean_squared_error":
            return ops.mean_squared_error(out, target), out.data
        if self.name == "mean_absolute_error":
            return ops.mean_absolute_error(out, target), out.data
        if self.name == "huber":
            return ops.huber(out, target, delta=self.delta), out.data
        raise ValueError(f"unknown loss {self.name!r}")

