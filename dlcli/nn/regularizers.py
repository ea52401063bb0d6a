"""Weight penalties added to the loss (Keras L1L2)."""

from __future__ import annotations

from dlcli.core import ops
from dlcli.core.backend import get_array_module
from dlcli.core.tensor import Tensor


class L1L2:
    """l1 * sum(|w|) + l2 * sum(w**2), built from core ops so it is differentiable.

    Example:
        penalty = L1L2(l2=1e-4)(layer.params["kernel"])
    """

    def __init__(self, l1: float = 0.0, l2: float = 0.0) -> None:
        for key, value in (("l1", l1), ("l2", l2)):
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise ValueError(f"regularizer {key} must be a number >= 0, got {value!r}")
        self.l1 = float(l1)
        self.l2 = float(l2)

    def __call__(self, w: Tensor) -> Tensor:
        total: Tensor | None = None
        if self.l1:
            total = self.l1 * ops.abs_(w).sum()
        if self.l2:
            term = self.l2 * (w * w).sum()
            total = term if total is None else total + term
        if total is None:  # both zero: a constant, with the weight's array module and dtype
            total = Tensor(get_array_module(w.data).zeros((), dtype=w.dtype))
        return total

    def get_config(self) -> dict[str, float]:
        return {"l1": self.l1, "l2": self.l2}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, L1L2) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash((self.l1, self.l2))

    def __repr__(self) -> str:
        return f"L1L2(l1={self.l1}, l2={self.l2})"


Regularizer = L1L2


def get_regularizer(spec: None | dict[str, float] | L1L2) -> L1L2 | None:
    """None, a dict {"l1": x, "l2": y} (either key may be left out) or a regularizer object.

    Raises:
        ValueError: for a dict with other keys or anything else.
    """
    if spec is None:
        return None
    if isinstance(spec, L1L2):
        return spec
    if isinstance(spec, dict):
        unknown = set(spec) - {"l1", "l2"}
        if unknown:
            raise ValueError(
                f"unknown regularizer key(s) {sorted(unknown)}; expected 'l1' and/or 'l2'"
            )
        return L1L2(**spec)
    raise ValueError(f"a regularizer must be None, a dict {{l1, l2}} or L1L2, got {spec!r}")


def regularizer_config(reg: L1L2 | None) -> dict[str, float] | None:
    """What a layer's get_config stores for a regularizer: None or {"l1": x, "l2": y}."""
    return None if reg is None else reg.get_config()
