"""Epoch metrics over whole numpy arrays, with Keras's definitions.

Classification: `y_out` holds predicted probabilities, (N, C) for softmax or (N, 1) / (N,) for a
binary sigmoid; `y_true` holds int labels (N,) (or one-hot (N, C)), or 0/1 floats (N, 1) for
binary. A binary output counts as positive when its probability is > 0.5 (Keras's threshold).
precision/recall/f1 are of the positive class for a binary output and macro-averaged over all
n_classes for softmax outputs (Keras F1Score(average="macro")); anything divided by zero is 0.0.
Regression: `y_out` and `y_true` are (N, k) floats; r2 is averaged over the k outputs.

`RunningMetrics` gives the same values from sums kept on the device batch by batch (training
reads them once per epoch); `compute_metrics` works on whole host arrays (evaluation).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from dlcli.core.backend import get_array_module, to_host

CLASSIFICATION_METRICS = ("accuracy", "top_k_accuracy", "precision", "recall", "f1")
REGRESSION_METRICS = ("mse", "mae", "rmse", "r2")
CLASSIFICATION_TASKS = ("classification", "binary", "multiclass")


def _div(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """a / b elementwise, 0.0 where b == 0."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    out = np.zeros(np.broadcast(a, b).shape)
    np.divide(a, b, out=out, where=b != 0)
    return out


def is_binary_output(y_out: np.ndarray) -> bool:
    """A single probability column (sigmoid) rather than a softmax over classes."""
    return y_out.ndim == 1 or y_out.shape[-1] == 1


def predicted_labels(y_out: Any) -> np.ndarray:
    """Class predictions from probabilities: argmax, or > 0.5 for a binary output. (N,) int64."""
    y_out = to_host(y_out)
    if is_binary_output(y_out):
        return (y_out.reshape(-1) > 0.5).astype(np.int64)
    return y_out.argmax(axis=-1).astype(np.int64)


def true_labels(y_true: Any, binary: bool = False) -> np.ndarray:
    """Integer labels (N,) from int labels, one-hot rows, or 0/1 floats for binary."""
    y_true = to_host(y_true)
    if binary:
        return (y_true.reshape(-1) > 0.5).astype(np.int64)
    if y_true.ndim == 2 and y_true.shape[1] > 1:  # one-hot or probabilities
        return y_true.argmax(axis=1).astype(np.int64)
    return y_true.reshape(-1).astype(np.int64)


def confusion_matrix(y_true: Any, y_pred: Any, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) int64 counts; rows are true classes, columns predicted ones."""
    t = np.asarray(to_host(y_true)).reshape(-1).astype(np.int64)
    p = np.asarray(to_host(y_pred)).reshape(-1).astype(np.int64)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels but y_pred has {p.size}")
    for name, a in (("y_true", t), ("y_pred", p)):
        if a.size and (a.min() < 0 or a.max() >= n_classes):
            raise ValueError(f"{name} has labels outside [0, {n_classes - 1}]")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    )


def _prf_from_confusion(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tp = np.diag(cm).astype(np.float64)
    precision = _div(tp, cm.sum(axis=0))
    recall = _div(tp, cm.sum(axis=1))
    f1 = _div(2 * precision * recall, precision + recall)
    return precision, recall, f1


def per_class_report(
    y_true: Any, y_pred: Any, n_classes: int, class_names: list[str] | None = None
) -> list[dict[str, Any]]:
    """Precision, recall, f1 and support of each class, from int labels and predicted labels.

    Returns:
        One dict per class: {"class": index, "name": str, "precision", "recall", "f1",
        "support": number of true samples of the class}.
    """
    if class_names is not None and len(class_names) != n_classes:
        raise ValueError(f"{len(class_names)} class names for {n_classes} classes")
    cm = confusion_matrix(y_true, y_pred, n_classes)
    precision, recall, f1 = _prf_from_confusion(cm)
    support = cm.sum(axis=1)
    return [
        {
            "class": c,
            "name": class_names[c] if class_names is not None else str(c),
            "precision": float(precision[c]),
            "recall": float(recall[c]),
            "f1": float(f1[c]),
            "support": int(support[c]),
        }
        for c in range(n_classes)
    ]


# -- classification metrics: (labels, probabilities, binary, n_classes, **params) -> float -------
def accuracy(labels: np.ndarray, y_out: np.ndarray, binary: bool, n_classes: int) -> float:
    """Fraction of samples whose predicted class is the true one."""
    if labels.size == 0:
        return 0.0
    return float(np.mean(predicted_labels(y_out) == labels))


def top_k_accuracy(
    labels: np.ndarray, y_out: np.ndarray, binary: bool, n_classes: int, k: int = 5
) -> float:
    """Fraction of samples whose true class is among the k highest probabilities.

    As Keras's in_top_k: classes tied with the k-th score count as in the top k.
    """
    if binary:
        raise ValueError("top_k_accuracy needs a softmax output over classes, not a binary one")
    if k < 1:
        raise ValueError(f"top_k_accuracy needs k >= 1, got {k}")
    if labels.size == 0:
        return 0.0
    true_score = y_out[np.arange(labels.size), labels]
    n_higher = (y_out > true_score[:, None]).sum(axis=1)
    return float(np.mean(n_higher < k))


def _binary_counts(labels: np.ndarray, y_out: np.ndarray) -> tuple[int, int, int]:
    pred = predicted_labels(y_out)
    tp = int(np.sum((pred == 1) & (labels == 1)))
    fp = int(np.sum((pred == 1) & (labels == 0)))
    fn = int(np.sum((pred == 0) & (labels == 1)))
    return tp, fp, fn


def _prf_binary(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p, r = float(_div(tp, tp + fp)), float(_div(tp, tp + fn))
    return p, r, float(_div(2 * p * r, p + r))


def _prf_macro(cm: np.ndarray) -> tuple[float, float, float]:
    p, r, f = (float(np.mean(a)) for a in _prf_from_confusion(cm))
    return p, r, f


def _prf(labels: np.ndarray, y_out: np.ndarray, binary: bool, n_classes: int) -> tuple:
    if binary:
        return _prf_binary(*_binary_counts(labels, y_out))
    return _prf_macro(confusion_matrix(labels, predicted_labels(y_out), n_classes))


def precision(labels: np.ndarray, y_out: np.ndarray, binary: bool, n_classes: int) -> float:
    """tp / (tp + fp): positive class (binary) or macro average over classes."""
    return _prf(labels, y_out, binary, n_classes)[0]


def recall(labels: np.ndarray, y_out: np.ndarray, binary: bool, n_classes: int) -> float:
    """tp / (tp + fn): positive class (binary) or macro average over classes."""
    return _prf(labels, y_out, binary, n_classes)[1]


def f1(labels: np.ndarray, y_out: np.ndarray, binary: bool, n_classes: int) -> float:
    """Harmonic mean of precision and recall: positive class, or the mean of per-class f1."""
    return _prf(labels, y_out, binary, n_classes)[2]


# -- regression metrics: (y_true, y_pred) -> float ---------------------------------------------
def mse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean squared error over all elements."""
    return float(np.mean((y_pred - y_true) ** 2)) if y_true.size else 0.0


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute error over all elements."""
    return float(np.mean(np.abs(y_pred - y_true))) if y_true.size else 0.0


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Square root of the mean squared error."""
    return float(np.sqrt(mse(y_true, y_pred)))


def r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination per output column, averaged (Keras R2Score default).

    A constant target column scores 1.0 when predicted exactly and 0.0 otherwise.
    """
    if y_true.size == 0:
        return 0.0
    ss_res = np.sum((y_true - y_pred) ** 2, axis=0)
    ss_tot = np.sum((y_true - y_true.mean(axis=0)) ** 2, axis=0)
    scores = np.where(ss_tot > 0, 1.0 - _div(ss_res, ss_tot), np.where(ss_res == 0, 1.0, 0.0))
    return float(np.mean(scores))


METRICS: dict[str, Callable[..., float]] = {
    "accuracy": accuracy,
    "top_k_accuracy": top_k_accuracy,
    "precision": precision,
    "recall": recall,
    "f1": f1,
    "mse": mse,
    "mae": mae,
    "rmse": rmse,
    "r2": r2,
}


def parse_metric(spec: str | dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(name, params) from "accuracy" or {"type": "top_k_accuracy", "k": 3}; unknown: ValueError."""
    if isinstance(spec, dict):
        params = dict(spec)
        name = params.pop("type", None)
    else:
        name, params = spec, {}
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; valid names: {', '.join(METRICS)}")
    allowed = {"k"} if name == "top_k_accuracy" else set()
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(f"unknown field(s) {unknown} for metric '{name}'")
    return name, params


def compute_metrics(
    names: list[str | dict[str, Any]],
    y_true: Any,
    y_out: Any,
    task: str,
    n_classes: int | None = None,
) -> dict[str, float]:
    """Compute the named metrics over a whole epoch's targets and outputs.

    Args:
        names: metric names, or dicts like {"type": "top_k_accuracy", "k": 3}.
        y_true: int labels (N,) / one-hot (N, C) / 0-1 floats (N, 1); regression targets (N, k).
        y_out: probabilities (N, C) or (N, 1); regression predictions (N, k).
        task: "classification" (also "binary", "multiclass") or "regression".
        n_classes: number of classes (defaults to C of a softmax output, 2 for binary).
    Returns:
        {name: value}, e.g. {"accuracy": 0.75, "top_k_accuracy": 1.0}.
    Example:
        >>> compute_metrics(["accuracy"], np.array([0, 1]), np.array([[0.9, 0.1], [0.8, 0.2]]),
        ...                 "classification", 2)
        {'accuracy': 0.5}
    """
    parsed = [parse_metric(spec) for spec in names]
    if not parsed:
        return {}
    y_true_np, y_out_np = to_host(y_true), to_host(y_out)
    if y_true_np.shape[0] != y_out_np.shape[0]:
        raise ValueError(f"{y_true_np.shape[0]} targets but {y_out_np.shape[0]} outputs")
    results: dict[str, float] = {}
    if task == "regression":
        y_t = y_true_np.astype(np.float64).reshape(y_true_np.shape[0], -1)
        y_p = y_out_np.astype(np.float64).reshape(y_out_np.shape[0], -1)
        if y_t.shape != y_p.shape:
            raise ValueError(f"regression targets {y_t.shape} and predictions {y_p.shape} differ")
        for name, _ in parsed:
            if name not in REGRESSION_METRICS:
                raise ValueError(f"metric '{name}' is for classification, not regression")
            results[name] = METRICS[name](y_t, y_p)
        return results
    if task not in CLASSIFICATION_TASKS:
        raise ValueError(
            f"unknown task {task!r}; expected one of {', '.join(CLASSIFICATION_TASKS)}, regression"
        )
    binary = is_binary_output(y_out_np)
    probs = y_out_np.astype(np.float64)
    if n_classes is None:
        n_classes = 2 if binary else probs.shape[-1]
    # label values are checked when the data enters (dlcli.data.check_labels), not per call
    labels = true_labels(y_true_np, binary)
    for name, params in parsed:
        if name not in CLASSIFICATION_METRICS:
            raise ValueError(f"metric '{name}' is for regression, not classification")
        results[name] = METRICS[name](labels, probs, binary, n_classes, **params)
    return results


# metrics an epoch needs every output for (the rest are sums of per-batch counts)
GATHERED_METRICS = ("r2",)


class RunningMetrics:
    """An epoch's metrics from sums kept on the device, batch by batch: nothing is read back
    until `result()`, which reads every sum in one transfer.

    The values are compute_metrics's over the whole epoch: accuracy, top-k, precision, recall
    and f1 from exact counts (a confusion matrix for softmax outputs), mse/mae/rmse from float64
    sums; r2 needs all outputs, which are kept on the device and read once at the end.

    Example:
        m = RunningMetrics(["accuracy"], "classification", 10, (10,))
        for xb, yb in batches:
            m.update(yb, model(xb).data)
        m.result()  # {"accuracy": ...}
    """

    def __init__(self, names: list[str | dict[str, Any]], task: str, n_classes: int | None,
                 output_shape: tuple[int, ...]) -> None:
        self.parsed = [parse_metric(spec) for spec in names]
        self.task = task
        self.binary = len(output_shape) == 0 or output_shape[-1] == 1
        self.cols = math.prod(output_shape)
        if n_classes is None:
            n_classes = 2 if self.binary else output_shape[-1]
        self.n_classes = n_classes
        regression = task == "regression"
        if not regression and task not in CLASSIFICATION_TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of "
                             f"{', '.join(CLASSIFICATION_TASKS)}, regression")
        layout: dict[str, tuple[int, ...]] = {}
        for name, params in self.parsed:
            if regression and name not in REGRESSION_METRICS:
                raise ValueError(f"metric '{name}' is for classification, not regression")
            if not regression and name not in CLASSIFICATION_METRICS:
                raise ValueError(f"metric '{name}' is for regression, not classification")
            if name == "accuracy":
                layout["correct"] = ()
            elif name == "top_k_accuracy":
                k = params.get("k", 5)
                if self.binary:
                    raise ValueError("top_k_accuracy needs a softmax output over classes, "
                                     "not a binary one")
                if k < 1:
                    raise ValueError(f"top_k_accuracy needs k >= 1, got {k}")
                layout[f"top_{k}"] = ()
            elif name in ("precision", "recall", "f1"):
                if self.binary:
                    layout.update(tp=(), fp=(), fn=())
                else:
                    layout["confusion"] = (n_classes, n_classes)
            elif name in ("mse", "rmse"):
                layout["squared_error"] = ()
            elif name == "mae":
                layout["absolute_error"] = ()
        self.layout = layout
        self.gather = any(name in GATHERED_METRICS for name, _ in self.parsed)
        self.sums: dict[str, Any] = {}
        self.outputs: list[Any] = []  # device arrays, only for GATHERED_METRICS
        self.seen = 0

    @property
    def size(self) -> int:
        """Length of the flat vector `state()` returns."""
        return sum(math.prod(shape) for shape in self.layout.values())

    def _zeros(self, xp: Any) -> None:
        if not self.sums:
            self.sums = {key: xp.zeros(shape, dtype=np.float64)
                         for key, shape in self.layout.items()}

    def update(self, y_true: Any, y_out: Any) -> None:
        """Add one batch: targets and outputs as arrays on one device (no host read)."""
        if not self.parsed:
            return
        xp = get_array_module(y_out)
        self._zeros(xp)
        n = len(y_out)
        if len(y_true) != n:
            raise ValueError(f"{len(y_true)} targets but {n} outputs")
        self.seen += n
        if self.gather:
            self.outputs.append(y_out)
        sums = self.sums
        if self.task == "regression":
            t = y_true.reshape(n, -1).astype(np.float64)
            p = y_out.reshape(n, -1).astype(np.float64)
            if t.shape != p.shape:
                raise ValueError(f"regression targets {t.shape} and predictions {p.shape} "
                                 "differ")
            d = p - t
            if "squared_error" in sums:
                sums["squared_error"] += (d * d).sum()
            if "absolute_error" in sums:
                sums["absolute_error"] += xp.abs(d).sum()
            return
        if self.binary:
            labels = (y_true.reshape(-1) > 0.5).astype(np.int64)
            pred = (y_out.reshape(-1) > 0.5).astype(np.int64)
        else:
            labels = (y_true.argmax(axis=1) if y_true.ndim == 2 and y_true.shape[1] > 1
                      else y_true.reshape(-1)).astype(np.int64, copy=False)
            pred = y_out.argmax(axis=-1).reshape(-1)
        for key, total in sums.items():
            if key == "correct":
                total += (pred == labels).sum()
            elif key.startswith("top_"):
                true_score = y_out[xp.arange(n), labels]
                n_higher = (y_out > true_score[:, None]).sum(axis=1)
                total += (n_higher < int(key[4:])).sum()
            elif key == "tp":
                total += ((pred == 1) & (labels == 1)).sum()
            elif key == "fp":
                total += ((pred == 1) & (labels == 0)).sum()
            elif key == "fn":
                total += ((pred == 0) & (labels == 1)).sum()
            elif key == "confusion":
                c = self.n_classes
                total += xp.bincount(labels * c + pred, minlength=c * c).reshape(c, c)

    def state(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(every sum in one float64 vector, the kept outputs or None), for a checkpoint."""
        if not self.sums:
            flat = np.zeros(self.size)
        else:
            xp = get_array_module(*self.sums.values())
            flat = to_host(xp.concatenate([v.reshape(-1) for v in self.sums.values()]))
        outputs = None
        if self.gather and self.outputs:
            xp = get_array_module(self.outputs[0])
            outputs = to_host(xp.concatenate(self.outputs))
        return np.array(flat, dtype=np.float64), outputs

    def _unflatten(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """The sums of `state()`'s flat vector, by name, in their shapes."""
        parts, i = {}, 0
        for key, shape in self.layout.items():
            k = math.prod(shape)
            parts[key] = flat[i:i + k].reshape(shape)
            i += k
        return parts

    def load(self, flat: np.ndarray, outputs: np.ndarray | None, seen: int, xp: Any) -> None:
        """Continue from `state()` after `seen` samples, on the array module xp."""
        flat = np.asarray(flat, dtype=np.float64).reshape(-1)
        if flat.size != self.size:
            raise ValueError(f"metric sums hold {flat.size} numbers, expected {self.size}")
        if self.gather and seen and (outputs is None or len(outputs) != seen
                                     or outputs.size != seen * self.cols):
            raise ValueError(f"the outputs kept for {', '.join(GATHERED_METRICS)} do not fit "
                             f"{seen} samples of {self.cols} values")
        self.sums = {key: xp.asarray(part) for key, part in self._unflatten(flat).items()}
        self.seen = seen
        self.outputs = [xp.asarray(outputs)] if self.gather and outputs is not None else []

    def result(self, y_true: Any = None) -> dict[str, float]:
        """The metrics, reading the sums in one transfer; y_true (every target of the epoch, in
        order) is needed only for GATHERED_METRICS."""
        if not self.parsed:
            return {}
        flat, outputs = self.state()
        v = self._unflatten(flat)
        n = self.seen
        elements = n * self.cols
        out: dict[str, float] = {}
        for name, params in self.parsed:
            if name == "accuracy":
                out[name] = float(v["correct"]) / n if n else 0.0
            elif name == "top_k_accuracy":
                out[name] = float(v[f"top_{params.get('k', 5)}"]) / n if n else 0.0
            elif name in ("precision", "recall", "f1"):
                if self.binary:
                    prf = _prf_binary(*(int(v[k]) for k in ("tp", "fp", "fn")))
                else:
                    prf = _prf_macro(v["confusion"].astype(np.int64))
                out[name] = prf[("precision", "recall", "f1").index(name)]
            elif name in ("mse", "rmse"):
                mse_ = float(v["squared_error"]) / elements if elements else 0.0
                out[name] = mse_ if name == "mse" else float(np.sqrt(mse_))
            elif name == "mae":
                out[name] = float(v["absolute_error"]) / elements if elements else 0.0
            else:  # a gathered metric
                if y_true is None:
                    raise ValueError(f"metric '{name}' needs the epoch's targets")
                t = np.asarray(to_host(y_true)).astype(np.float64).reshape(n, -1)
                p = (np.zeros((0, self.cols)) if outputs is None else outputs)
                out[name] = METRICS[name](t, p.astype(np.float64).reshape(n, -1))
        return out
