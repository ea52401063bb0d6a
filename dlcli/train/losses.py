"""The loss of a config, fused with the model's last activation where numerics need it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from dlcli.core import Tensor, ops
from dlcli.core.backend import get_array_module

CLASSIFICATION_LOSSES = {
    "categorical_crossentropy",
    "sparse_categorical_crossentropy",
    "binary_crossentropy",
}
LOSS_ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error"}


def canonical_loss_name(name: str) -> str:
    """The loss's full Keras name: "mse" -> "mean_squared_error"; other names as given."""
    return LOSS_ALIASES.get(name, name)


@dataclass(frozen=True)
class LossSpec:
    """A loss by name plus its options; knows whether it can work from logits."""

    name: str
    from_logits: bool = False
    delta: float = 1.0
    label_smoothing: float = 0.0

    @classmethod
    def from_config(cls, loss: Any) -> LossSpec:
        if isinstance(loss, str):
            return cls(canonical_loss_name(loss))
        d = loss if isinstance(loss, dict) else loss.model_dump()
        name = canonical_loss_name(d["type"])
        return cls(name, bool(d.get("from_logits") or False), float(d.get("delta") or 1.0),
                   float(d.get("label_smoothing") or 0.0))

    @property
    def unsmoothed(self) -> LossSpec:
        """The same loss without label smoothing (what `dlcli eval` reports beside it)."""
        return replace(self, label_smoothing=0.0)

    def _class_rows(self, y: Any, like: Tensor) -> Any:
        """Targets for a softmax loss: y * (1 - e) + e / k over k classes (Keras's formula);
        the labels as given when there is no smoothing."""
        e = self.label_smoothing
        if not e:
            return y
        t = ops.class_targets(y, like)
        return t * (1.0 - e) + e / like.shape[-1]

    def _binary_rows(self, y: Any, like: Tensor) -> Any:
        """Targets for a sigmoid loss: y * (1 - e) + e / 2 (Keras's formula)."""
        t = y.reshape(like.shape).astype(like.dtype)
        e = self.label_smoothing
        return t * (1.0 - e) + e / 2 if e else t

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
        value, out, _ = self.compute(model, x, y, training)
        return value, out

    def compute(self, model: Any, x: Tensor, y: Any, training: bool,
                plain: bool = False) -> tuple[Tensor, Any, Tensor | None]:
        """(loss, outputs, the loss without label smoothing when `plain` and smoothing is on),
        from one forward pass."""
        fused = self.fused_activation()
        last = getattr(model.layers[-1], "activation", None)
        plain = plain and bool(self.label_smoothing)
        if fused is not None and (last == fused or (self.from_logits and last in (None, "linear"))):
            z = model.logits(x, training=training)
            if fused == "softmax":
                value = ops.softmax_cross_entropy(z, self._class_rows(y, z))
                extra = ops.softmax_cross_entropy(z.detach(), y) if plain else None
                return value, ops.softmax(z.detach()).data, extra
            value = ops.sigmoid_binary_crossentropy(z, self._binary_rows(y, z))
            extra = (ops.sigmoid_binary_crossentropy(z.detach(), self.unsmoothed._binary_rows(y, z))
                     if plain else None)
            return value, ops.sigmoid(z.detach()).data, extra
        out = model(x, training=training)
        if self.name in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
            xp = get_array_module(out.data)
            onehot = y if y.ndim == 2 else xp.eye(out.shape[-1], dtype=out.dtype)[y]
            value = ops.categorical_crossentropy(out, self._class_rows(onehot, out))
            extra = ops.categorical_crossentropy(out.detach(), onehot) if plain else None
            return value, out.data, extra
        if self.binary:
            value = ops.binary_crossentropy(out, self._binary_rows(y, out))
            extra = (ops.binary_crossentropy(out.detach(), self.unsmoothed._binary_rows(y, out))
                     if plain else None)
            return value, out.data, extra
        target = y.reshape(out.shape).astype(out.dtype)
        if self.name == "mean_squared_error":
            return ops.mean_squared_error(out, target), out.data, None
        if self.name == "mean_absolute_error":
            return ops.mean_absolute_error(out, target), out.data, None
        if self.name == "huber":
            return ops.huber(out, target, delta=self.delta), out.data, None
        raise ValueError(f"unknown loss {self.name!r}")
