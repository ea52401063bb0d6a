"""Losses: each returns a scalar Tensor, the mean over the batch (Keras's reduction).

The target `y` is a constant: a raw array or a Tensor whose gradient is never taken. The
fused losses (softmax and sigmoid cross-entropy from logits) are single Functions because
the composed form overflows or loses precision at large logits; the rest are composed from
existing ops or, for huber, one small Function.
"""

from __future__ import annotations

from typing import Any

from dlcli.core.backend import get_array_module
from dlcli.core.ops.activations import _log_softmax, _sigmoid
from dlcli.core.ops.elementwise import abs_, clip, log
from dlcli.core.tensor import Function, Tensor
from dlcli.errors import DataError

EPSILON = 1e-7  # Keras backend.epsilon(): probabilities are clipped to [EPSILON, 1 - EPSILON]


# -- targets -----------------------------------------------------------------------------------
def _as_tensor(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


def _raw(y: Any, like: Tensor) -> Any:
    """The target's array on the prediction's device (numpy or cupy)."""
    data = y.data if isinstance(y, Tensor) else y
    return get_array_module(like.data).asarray(data)


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(n for n in shape if n != 1)


def _matched(y: Any, like: Tensor) -> Any:
    """y as a float array of the prediction's shape and dtype; (N,) and (N, 1) are one shape."""
    t = _raw(y, like).astype(like.dtype, copy=False)
    if t.shape != like.shape:
        if _squeezed(t.shape) != _squeezed(like.shape):
            raise DataError(
                f"targets of shape {t.shape} do not fit predictions of shape {like.shape}"
            )
        t = t.reshape(like.shape)
    return t


def class_targets(y: Any, like: Tensor) -> Any:
    """Class rows (one-hot for integer labels) in the prediction's dtype; see _class_target."""
    return _class_target(y, _as_tensor(like))


def _class_target(y: Any, like: Tensor) -> Any:
    """One-hot/probability rows in the prediction's dtype, from class rows or integer labels.

    Rows of the prediction's shape are taken as they are; anything else must hold one integer
    class index per row, e.g. (N,) or (N, 1) for predictions (N, C). The labels' values are
    checked once, when the data enters (dlcli.data.check_labels), not here on every batch:
    reading them would make the host wait for the device. A label outside [0, C) gives an
    all-zero row (no loss, no gradient for that sample).
    """
    xp = get_array_module(like.data)
    t = _raw(y, like)
    if t.shape == like.shape:
        return t.astype(like.dtype, copy=False)
    lead, n_classes = like.shape[:-1], like.shape[-1]
    if _squeezed(t.shape) != _squeezed(lead):
        raise DataError(
            f"targets of shape {t.shape} fit neither class labels {lead} nor one-hot rows "
            f"{like.shape} for predictions of shape {like.shape}"
        )
    if t.dtype.kind not in "iuf":  # float labels hold whole numbers (checked with the data)
        raise DataError(f"class labels must be integers, got dtype {t.dtype}")
    labels = t.reshape(lead).astype(xp.int64, copy=False)
    return (labels[..., None] == xp.arange(n_classes)).astype(like.dtype)


# -- fused losses on logits --------------------------------------------------------------------
class SoftmaxCrossEntropy(Function):
    """mean over rows of -sum(t * log_softmax(x)); rows along the last axis."""

    def __init__(self, target: Any) -> None:
        self.t = target

    def forward(self, x):
        self.logp = _log_softmax(x, -1)  # finite even at logits of +-1e4
        self.count = x.size // x.shape[-1]
        return -(self.t * self.logp).sum() / self.count

    def backward(self, gy):
        xp = get_array_module(gy)
        # d/dx -sum(t * logp) = softmax * sum(t) - t (= softmax - onehot for one-hot rows)
        p = xp.exp(self.logp)
        return (p * self.t.sum(axis=-1, keepdims=True) - self.t) * (gy / self.count)


class SigmoidBinaryCrossEntropy(Function):
    """mean of max(x, 0) - x * t + log(1 + exp(-|x|)), the stable form of BCE on logits."""

    def __init__(self, target: Any) -> None:
        self.t = target

    def forward(self, x):
        xp = get_array_module(x)
        self.x = x
        per = xp.maximum(x, 0.0) - x * self.t + xp.log1p(xp.exp(-xp.abs(x)))
        return per.sum() / x.size

    def backward(self, gy):
        return (_sigmoid(self.x) - self.t) * (gy / self.x.size)


class Huber(Function):
    """mean of 0.5 e^2 where |e| <= delta, delta * (|e| - 0.5 delta) elsewhere; e = y_pred - y."""

    def __init__(self, target: Any, delta: float = 1.0) -> None:
        self.t, self.delta = target, delta

    def forward(self, x):
        xp = get_array_module(x)
        d = self.delta
        self.e = x - self.t
        a = xp.abs(self.e)
        per = xp.where(a <= d, 0.5 * self.e * self.e, d * a - 0.5 * d * d)
        return per.sum() / x.size

    def backward(self, gy):
        xp = get_array_module(gy)
        return xp.clip(self.e, -self.delta, self.delta) * (gy / self.e.size)


# -- public functions --------------------------------------------------------------------------
def softmax_cross_entropy(logits: Tensor, y: Any) -> Tensor:
    """Categorical cross-entropy from logits, fused with the softmax (log-sum-exp).

    Args:
        logits: (N, C) scores (or (..., C): every leading position is one sample).
        y: integer labels (N,) / (N, 1), or one-hot / probability rows (N, C).

    Returns:
        The scalar mean loss over the batch.

    Example:
        softmax_cross_entropy(Tensor([[2.0, 0.5]]), np.array([0]))  # -log softmax(x)[0]
    """
    logits = _as_tensor(logits)
    return SoftmaxCrossEntropy.apply(logits, target=_class_target(y, logits))


def sigmoid_binary_crossentropy(logits: Tensor, y: Any) -> Tensor:
    """Binary cross-entropy from logits, fused with the sigmoid; y floats in [0, 1].

    y of shape (N,) and logits (N, 1) (or the reverse) are matched, never broadcast to (N, N).
    """
    logits = _as_tensor(logits)
    return SigmoidBinaryCrossEntropy.apply(logits, target=_matched(y, logits))


def categorical_crossentropy(probs: Tensor, y: Any) -> Tensor:
    """Cross-entropy from probabilities as Keras computes it.

    Rows are renormalised to sum to 1 and clipped to [1e-7, 1 - 1e-7] before the log.
    y: one-hot / probability rows (N, C) or integer labels (N,).
    """
    probs = _as_tensor(probs)
    t = Tensor(_class_target(y, probs))
    p = clip(probs / probs.sum(axis=-1, keepdims=True), EPSILON, 1.0 - EPSILON)
    return -(log(p) * t).sum(axis=-1).mean()


def binary_crossentropy(probs: Tensor, y: Any) -> Tensor:
    """Binary cross-entropy from probabilities, clipped to [1e-7, 1 - 1e-7] like Keras."""
    probs = _as_tensor(probs)
    t = Tensor(_matched(y, probs))
    p = clip(probs, EPSILON, 1.0 - EPSILON)
    return -(t * log(p) + (1.0 - t) * log(1.0 - p)).mean()


def mean_squared_error(y_pred: Tensor, y: Any) -> Tensor:
    """mean((y_pred - y)^2) over every element (Keras: per sample, then over the batch)."""
    y_pred = _as_tensor(y_pred)
    return ((y_pred - Tensor(_matched(y, y_pred))) ** 2).mean()


def mean_absolute_error(y_pred: Tensor, y: Any) -> Tensor:
    """mean(|y_pred - y|) over every element."""
    y_pred = _as_tensor(y_pred)
    return abs_(y_pred - Tensor(_matched(y, y_pred))).mean()


def huber(y_pred: Tensor, y: Any, delta: float = 1.0) -> Tensor:
    """Huber loss: quadratic for |error| <= delta, linear beyond; mean over every element."""
    y_pred = _as_tensor(y_pred)
    return Huber.apply(y_pred, target=_matched(y, y_pred), delta=float(delta))
