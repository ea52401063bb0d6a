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

# Keras's string shorthands with their documented factor 0.01. Keras 3's `regularizers.get`
# looks strings up by class name, which makes "l1_l2" an unknown name there and "l1l2" an
# L1L2() with both factors 0; we follow Keras's documentation (and tf.keras 2's l1_l2()),
# which says kernel_regularizer="l1_l2" means l1 = l2 = 0.01.
SHORTHANDS: dict[str, dict[str, float]] = {
    "l1": {"l1": 0.01},
    "l2": {"l2": 0.01},
    "l1_l2": {"l1": 0.01, "l2": 0.01},
}


def get_regularizer(spec: None | str | dict[str, float] | L1L2) -> L1L2 | None:
    """None, a Keras name ("l1", "l2", "l1_l2": factors 0.01), a dict {"l1": x, "l2": y} (either
    key may be left out) or a regularizer object.

    Raises:
        ValueError: for an unknown name, a dict with other keys or anything else.

    Example:
        get_regularizer("l2") == L1L2(l2=0.01)
    """
    if spec is None:
        return None
    if isinstance(spec, L1L2):
        return spec
    if isinstance(spec, str):
        if spec not in SHORTHANDS:
            raise ValueError(f"unknown regularizer {spec!r}; expected one of: "
                             f"{', '.join(SHORTHANDS)} or a mapping {{l1: x, l2: y}}")
        return L1L2(**SHORTHANDS[spec])
    if isinstance(spec, dict):
        unknown = set(spec) - {"l1", "l2"}
        if unknown:
            raise ValueError(
                f"unknown regularizer key(s) {sorted(unknown)}; expected 'l1' and/or 'l2'"
            )
        return L1L2(**spec)
    raise ValueError(f"a regularizer must be None, a name ({', '.join(SHORTHANDS)}), a dict "
                     f"{{l1, l2}} or L1L2, got {spec!r}")


def regularizer_config(reg: L1L2 | None) -> dict[str, float] | None:
    """What a layer's get_config stores for a regularizer: None or {"l1": x, "l2": y}."""
    return None if reg is None else reg.get_config()
