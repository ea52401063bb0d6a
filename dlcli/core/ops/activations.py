"""Activations: one Function per op, each written once for numpy and cupy (`xp`).

Python-float constants keep float32 inputs float32 (numpy's weak scalars), so no op here
upcasts. Formulas follow Keras; the numerically delicate ones (sigmoid, softplus, softmax,
log_softmax) never exponentiate a large positive number.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from typing import Any

from dlcli.core.backend import get_array_module
from dlcli.core.ops.elementwise import exp
from dlcli.core.parallel import rowwise
from dlcli.core.tensor import Function, Tensor

# Keras / Klambauer et al. (2017) constants.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_TANH_C = 0.044715


# -- erf (numpy has none): Cephes ndtr.c rational approximations, full double precision ------
# One code path for numpy and cupy, no scipy dependency.
_ERF_T = (9.60497373987051638749e0, 9.00260197203842689217e1, 2.23200534594684319226e3,
          7.00332514112805075473e3, 5.55923013010394962768e4)
_ERF_U = (1.0, 3.35617141647503099647e1, 5.21357949780152679795e2, 4.59432382970980127987e3,
          2.26290000613890934246e4, 4.92673942608635921086e4)
_ERFC_P = (2.46196981473530512524e-10, 5.64189564831068821977e-1, 7.46321056442269912687e0,
           4.86371970985681366614e1, 1.96520832956077098242e2, 5.26445194995477358631e2,
           9.34528527171957607540e2, 1.02755188689515710272e3, 5.57535335369399327526e2)
_ERFC_Q = (1.0, 1.32281951154744992508e1, 8.67072140885989742329e1, 3.54937778887819891062e2,
           9.75708501743205489753e2, 1.82390916687909736289e3, 2.24633760818710981792e3,
           1.65666309194161350182e3, 5.57535340817727675546e2)  # fmt: skip


def _polyval(coefs: tuple[float, ...], x: Any) -> Any:
    """Horner's rule, highest power first; python-float coefficients keep x's dtype."""
    y = x * coefs[0] + coefs[1]
    for c in coefs[2:]:
        y = y * x + c
    return y


def erf(x: Any) -> Any:
    """The error function of an array (numpy or cupy): ~1e-16 relative error in float64."""
    xp = get_array_module(x)
    a = xp.abs(x)
    small = a <= 1.0
    # |x| <= 1: x T(x^2) / U(x^2); the unused branch gets a harmless argument
    inner = xp.where(small, a, 0.0)
    z = inner * inner
    y_small = inner * _polyval(_ERF_T, z) / _polyval(_ERF_U, z)
    # |x| > 1: 1 - exp(-x^2) P(|x|) / Q(|x|). Beyond 8, erfc < 1e-28 and erf is 1 in float64,
    # so clamping there makes Cephes's third (R/S) range unnecessary.
    outer = xp.where(small, 1.0, xp.minimum(a, 8.0))
    y_large = 1.0 - xp.exp(-outer * outer) * _polyval(_ERFC_P, outer) / _polyval(_ERFC_Q, outer)
    return xp.sign(x) * xp.where(small, y_small, y_large)


# -- elementwise activations ------------------------------------------------------------------
class ReLU(Function):
    # maximum and a multiply by the mask are several times faster than where() on big arrays
    def forward(self, x):
        xp = get_array_module(x)
        self.y = xp.empty(x.shape, dtype=x.dtype)
        rowwise(lambda x, y: xp.maximum(x, 0, out=y), x, self.y)
        return self.y

    def backward(self, gy):
        xp = get_array_module(gy)
        gx = xp.empty(gy.shape, dtype=gy.dtype)
        rowwise(lambda gy, y, gx: xp.multiply(gy, y > 0, out=gx), gy, self.y, gx)
        return gx


class LeakyReLU(Function):
    """x for x > 0, negative_slope * x otherwise (Keras default slope 0.2)."""

    def __init__(self, negative_slope: float = 0.2) -> None:
        self.slope = negative_slope

    def forward(self, x):
        self.mask = x > 0
        return get_array_module(x).where(self.mask, x, self.slope * x)

    def backward(self, gy):
        return get_array_module(gy).where(self.mask, gy, self.slope * gy)


class ELU(Function):
    """x for x > 0, alpha * (exp(x) - 1) otherwise."""

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = alpha

    def forward(self, x):
        xp = get_array_module(x)
        self.mask = x > 0
        # expm1 of min(x, 0): accurate near 0 and no overflow in the branch we discard
        self.neg = self.alpha * xp.expm1(xp.minimum(x, 0.0))
        return xp.where(self.mask, x, self.neg)

    def backward(self, gy):
        return get_array_module(gy).where(self.mask, gy, gy * (self.neg + self.alpha))


class SELU(Function):
    """scale * elu(x, alpha) with the self-normalising constants."""

    def forward(self, x):
        xp = get_array_module(x)
        self.mask = x > 0
        self.neg = (SELU_SCALE * SELU_ALPHA) * xp.expm1(xp.minimum(x, 0.0))
        return xp.where(self.mask, SELU_SCALE * x, self.neg)

    def backward(self, gy):
        xp = get_array_module(gy)
        return xp.where(self.mask, SELU_SCALE * gy, gy * (self.neg + SELU_SCALE * SELU_ALPHA))


class GELU(Function):
    """x * Phi(x) (exact, with erf) or Keras's tanh approximation when approximate=True."""

    def __init__(self, approximate: bool = False) -> None:
        self.approximate = approximate

    def forward(self, x):
        xp = get_array_module(x)
        self.x = x
        if self.approximate:
            self.t = xp.tanh(_SQRT_2_OVER_PI * (x + _GELU_TANH_C * x * x * x))
            return 0.5 * x * (1.0 + self.t)
        self.cdf = 0.5 * (1.0 + erf(x * (1.0 / math.sqrt(2.0))))
        return x * self.cdf

    def backward(self, gy):
        xp = get_array_module(gy)
        x = self.x
        if self.approximate:
            t = self.t
            dinner = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_TANH_C * x * x)
            return gy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * dinner)
        pdf = _INV_SQRT_2PI * xp.exp(-0.5 * x * x)
        return gy * (self.cdf + x * pdf)


def _sigmoid(x: Any) -> Any:
    """1 / (1 + exp(-x)) without overflow: exp only ever sees -|x|."""
    xp = get_array_module(x)
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


class Sigmoid(Function):
    def forward(self, x):
        self.y = _sigmoid(x)
        return self.y

    def backward(self, gy):
        return gy * self.y * (1.0 - self.y)


class Tanh(Function):
    def forward(self, x):
        self.y = get_array_module(x).tanh(x)
        return self.y

    def backward(self, gy):
        return gy * (1.0 - self.y * self.y)


class Softplus(Function):
    """log(1 + exp(x)) as log1p(exp(-|x|)) + max(x, 0): finite for any x."""

    def forward(self, x):
        xp = get_array_module(x)
        self.x = x
        return xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(x, 0.0)

    def backward(self, gy):
        return gy * _sigmoid(self.x)


class SiLU(Function):
    """x * sigmoid(x) (Keras silu, alias swish)."""

    def forward(self, x):
        self.x, self.s = x, _sigmoid(x)
        return x * self.s

    def backward(self, gy):
        s = self.s
        return gy * (s * (1.0 + self.x * (1.0 - s)))


class Mish(Function):
    """x * tanh(softplus(x)) (Misra 2019, Keras mish)."""

    def forward(self, x):
        xp = get_array_module(x)
        self.x = x
        self.t = xp.tanh(xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(x, 0.0))
        return x * self.t

    def backward(self, gy):
        t = self.t
        return gy * (t + self.x * (1.0 - t * t) * _sigmoid(self.x))


class Clip(Function):
    """min(max(x, lo), hi) times `scale`, plus `shift` before clipping: relu6 and hard_sigmoid.

    y = clip(x * scale + shift, lo, hi); the gradient is `scale` inside the interval, 0 outside.
    """

    def __init__(self, lo: float, hi: float, scale: float = 1.0, shift: float = 0.0) -> None:
        self.lo, self.hi, self.scale, self.shift = lo, hi, scale, shift

    def forward(self, x):
        xp = get_array_module(x)
        z = x * self.scale + self.shift
        self.inside = (z > self.lo) & (z < self.hi)
        return xp.clip(z, self.lo, self.hi)

    def backward(self, gy):
        return (gy * self.inside) * self.scale  # bool mask first: stays in gy's dtype


class HardSiLU(Function):
    """x * hard_sigmoid(x) = x * relu6(x + 3) / 6 (Keras hard_silu, alias hard_swish)."""

    def forward(self, x):
        xp = get_array_module(x)
        self.x = x
        self.h = xp.clip(x * (1.0 / 6.0) + 0.5, 0.0, 1.0)
        return x * self.h

    def backward(self, gy):
        xp = get_array_module(gy)
        inside = (self.x > -3.0) & (self.x < 3.0)
        return gy * (self.h + xp.where(inside, self.x * (1.0 / 6.0), 0.0))


class Softsign(Function):
    """x / (|x| + 1)."""

    def forward(self, x):
        xp = get_array_module(x)
        self.d = xp.abs(x) + 1.0
        return x / self.d

    def backward(self, gy):
        return gy / (self.d * self.d)


class LogSigmoid(Function):
    """log(sigmoid(x)) = -softplus(-x), finite for any x."""

    def forward(self, x):
        xp = get_array_module(x)
        self.x = x
        return -(xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(-x, 0.0))

    def backward(self, gy):
        return gy * _sigmoid(-self.x)


class CELU(Function):
    """max(x, 0) + min(0, alpha * (exp(x / alpha) - 1)) (Barron 2017, Keras celu, alpha 1)."""

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = alpha

    def forward(self, x):
        xp = get_array_module(x)
        self.mask = x > 0
        self.e = xp.exp(xp.minimum(x, 0.0) / self.alpha)
        return xp.where(self.mask, x, self.alpha * (self.e - 1.0))

    def backward(self, gy):
        return get_array_module(gy).where(self.mask, gy, gy * self.e)


# -- along an axis -----------------------------------------------------------------------------
def _softmax(x: Any, axis: int) -> Any:
    xp = get_array_module(x)
    e = xp.exp(x - x.max(axis=axis, keepdims=True))  # max-subtracted: exp never overflows
    return e / e.sum(axis=axis, keepdims=True)


def _log_softmax(x: Any, axis: int) -> Any:
    xp = get_array_module(x)
    z = x - x.max(axis=axis, keepdims=True)
    return z - xp.log(xp.exp(z).sum(axis=axis, keepdims=True))  # log-sum-exp, sum >= 1


class Softmax(Function):
    def __init__(self, axis: int = -1) -> None:
        self.axis = axis

    def forward(self, x):
        self.y = _softmax(x, self.axis)
        return self.y

    def backward(self, gy):
        y = self.y
        return y * (gy - (gy * y).sum(axis=self.axis, keepdims=True))


class LogSoftmax(Function):
    def __init__(self, axis: int = -1) -> None:
        self.axis = axis

    def forward(self, x):
        self.y = _log_softmax(x, self.axis)
        return self.y

    def backward(self, gy):
        xp = get_array_module(gy)
        return gy - xp.exp(self.y) * gy.sum(axis=self.axis, keepdims=True)


# -- public functions --------------------------------------------------------------------------
def relu(x: Tensor) -> Tensor:
    """max(x, 0)."""
    return ReLU.apply(x)


def leaky_relu(x: Tensor, negative_slope: float = 0.2) -> Tensor:
    """x for x > 0, negative_slope * x otherwise."""
    return LeakyReLU.apply(x, negative_slope=float(negative_slope))


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """x for x > 0, alpha * (exp(x) - 1) otherwise."""
    return ELU.apply(x, alpha=float(alpha))


def selu(x: Tensor) -> Tensor:
    """Scaled ELU with Keras's constants (alpha ~ 1.6733, scale ~ 1.0507)."""
    return SELU.apply(x)


def gelu(x: Tensor, approximate: bool = False) -> Tensor:
    """x * Phi(x) with the exact erf form, or the tanh approximation when approximate=True."""
    return GELU.apply(x, approximate=bool(approximate))


def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + exp(-x)), stable for large |x|."""
    return Sigmoid.apply(x)


def tanh(x: Tensor) -> Tensor:
    """Hyperbolic tangent."""
    return Tanh.apply(x)


def softplus(x: Tensor) -> Tensor:
    """log(1 + exp(x)), stable for large |x|."""
    return Softplus.apply(x)


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along `axis` (max-subtracted)."""
    return Softmax.apply(x, axis=axis)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """x - logsumexp(x) along `axis`."""
    return LogSoftmax.apply(x, axis=axis)


def silu(x: Tensor) -> Tensor:
    """x * sigmoid(x); Keras's silu, also called swish."""
    return SiLU.apply(x)


def mish(x: Tensor) -> Tensor:
    """x * tanh(softplus(x))."""
    return Mish.apply(x)


def relu6(x: Tensor) -> Tensor:
    """min(max(x, 0), 6)."""
    return Clip.apply(x, lo=0.0, hi=6.0)


def hard_sigmoid(x: Tensor) -> Tensor:
    """relu6(x + 3) / 6 = clip(x / 6 + 0.5, 0, 1), as Keras 3 defines it."""
    return Clip.apply(x, lo=0.0, hi=1.0, scale=1.0 / 6.0, shift=0.5)


def hard_silu(x: Tensor) -> Tensor:
    """x * hard_sigmoid(x); Keras's hard_silu, also called hard_swish."""
    return HardSiLU.apply(x)


def softsign(x: Tensor) -> Tensor:
    """x / (|x| + 1)."""
    return Softsign.apply(x)


def exponential(x: Tensor) -> Tensor:
    """exp(x): the elementwise op under Keras's activation name."""
    return exp(x)


def log_sigmoid(x: Tensor) -> Tensor:
    """log(sigmoid(x))."""
    return LogSigmoid.apply(x)


def celu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """Continuously differentiable ELU."""
    return CELU.apply(x, alpha=float(alpha))


def linear(x: Tensor) -> Tensor:
    """The identity: returns x itself (no graph node)."""
    return x


ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "linear": linear,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "elu": elu,
    "selu": selu,
    "gelu": gelu,
    "sigmoid": sigmoid,
    "tanh": tanh,
    "softplus": softplus,
    "softmax": softmax,
    "log_softmax": log_softmax,
    "silu": silu,
    "swish": silu,
    "mish": mish,
    "relu6": relu6,
    "hard_sigmoid": hard_sigmoid,
    "hard_silu": hard_silu,
    "hard_swish": hard_silu,
    "softsign": softsign,
    "exponential": exponential,
    "log_sigmoid": log_sigmoid,
    "celu": celu,
}


def get_activation(name: str | None) -> Callable[[Tensor], Tensor]:
    """The activation function called `name` (None means linear).

    Raises:
        ValueError: for an unknown name; the message lists the valid names.

    Example:
        get_activation("relu")(Tensor([-1.0, 2.0]))  # Tensor([0., 2.])
    """
    if name is None:
        return linear
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name).lower(), list(ACTIVATIONS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown activation {name!r}{hint}; valid names: {', '.join(ACTIVATIONS)}"
        ) from None
