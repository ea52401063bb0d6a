"""Labels and targets: the task, class ids from text or floats, and the check against the model.

`check_labels` runs once per split before training (and before eval), so the loss and the
metrics can trust the labels they get.
"""

from __future__ import annotations

import numpy as np

from dlcli.data.raw import CLASSIFICATION, REGRESSION, Raw
from dlcli.errors import DataError

_CROSSENTROPY = ("categorical_crossentropy", "sparse_categorical_crossentropy")


def resolve_task(task: str | None, raw: Raw) -> str:
    """The task the loss asks for (`task`), checked against what the dataset says it is;
    inferred from the label dtype when neither says."""
    if raw.task is not None and task is not None and task != raw.task:
        fix = "a crossentropy loss"
        if raw.task == REGRESSION:
            fix = "a regression loss (mse, mae, huber)"
        raise DataError(
            f"{raw.source} is a {raw.task} dataset but the loss makes this {task}; use {fix}"
        )
    if task is not None:
        return task
    if raw.task is not None:
        return raw.task
    kind = raw.parts["train"][1].dtype.kind
    return CLASSIFICATION if kind in "biuUSO" else REGRESSION


def encode_labels(raw: Raw, task: str) -> list[str] | None:
    """Make labels int64 class ids (text labels mapped by the train split's sorted classes) or
    float32 (N, k) targets, in place in raw.parts. Returns the class names."""
    parts = raw.parts
    y_train = parts["train"][1]
    class_names = raw.class_names
    text = y_train.dtype.kind in "USO"
    if task == REGRESSION and text:
        raise DataError(
            f"{raw.subject('train', 'targets')} are text (e.g. {str(y_train[0])!r}); a "
            f"regression loss needs numbers, use a crossentropy loss for class labels"
        )
    if task == CLASSIFICATION and text:
        class_names = sorted({str(v) for v in y_train.ravel()})
    index = {name: i for i, name in enumerate(class_names or [])}
    for split, part in parts.items():
        if part is None:
            continue
        x, y = part
        if y.ndim > 2:
            y = y.reshape(len(y), -1)
        if task == CLASSIFICATION and y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]  # (N, 1) class ids, as some tools save them
        if task == REGRESSION:
            if y.dtype.kind not in "biuf":
                what = raw.subject(split, "targets")
                raise DataError(f"{what} are not numbers (dtype {y.dtype})")
            y = y.astype(np.float32).reshape(len(y), -1)
        elif text:
            strings = one_text_column(y, raw.subject(split, "labels")).astype(str)
            unknown = sorted({str(v) for v in strings} - set(index))
            if unknown:
                raise DataError(
                    f"{raw.subject(split, 'labels')} include {unknown[:5]} which the train labels "
                    f"do not have (train classes: {class_names})"
                )
            y = np.array([index[s] for s in strings], dtype=np.int64)
        elif y.dtype.kind not in "biuf":
            raise DataError(f"{raw.subject(split, 'labels')} are not numbers (dtype {y.dtype})")
        elif y.ndim == 2:
            y = y.astype(np.float32)  # one-hot or multi-label columns
        elif y.dtype.kind == "f":
            # Beyond 2**53 a float is no exact integer, and the cast to int64 would overflow.
            y64 = y.astype(np.float64)  # float16 cannot even hold 2**53
            wrong = ~np.isfinite(y64) | (y64 != np.round(y64)) | (np.abs(y64) >= 2.0**53)
            if wrong.any():
                bad = y[wrong][0]
                raise DataError(
                    f"{raw.subject(split, 'labels')} must be integer class ids for a "
                    f"classification loss, got {bad}; use a regression loss for continuous targets"
                )
            y = y.astype(np.int64)
        else:
            y = y.astype(np.int64)
        parts[split] = (x, y)
    return class_names


def one_text_column(y: np.ndarray, subject: str) -> np.ndarray:
    """Text labels as (N,): one class name per sample."""
    if y.ndim == 2 and y.shape[1] == 1:
        return y[:, 0]
    if y.ndim != 1:
        raise DataError(
            f"{subject} are text of shape {list(y.shape)}; text labels must be one class name "
            f"per sample"
        )
    return y


def count_classes(task: str, class_names: list[str] | None, ys: list[np.ndarray]) -> int | None:
    """Classes seen in encoded labels (columns, names, or the largest id + 1); None for
    regression."""
    if task == REGRESSION:
        return None
    if ys[0].ndim == 2:
        return int(ys[0].shape[1])
    if class_names is not None:
        return len(class_names)
    return int(max(int(y.max()) for y in ys)) + 1


def check_labels(
    y: np.ndarray,
    n_outputs: int,
    loss_name: str,
    split: str = "train",
    *,
    source: str | None = None,
) -> None:
    """Check labels against the last layer's units for a loss; DataError saying what to change.

    Args:
        y: labels or targets of one split, as in Splits.
        n_outputs: units of the model's last layer.
        loss_name: the loss, e.g. "categorical_crossentropy", "binary_crossentropy", "mse".
        split: named in messages ("the train labels").
        source: a data file named in messages instead of the split ("the labels in F").
    """
    y = np.asarray(y)
    loss = loss_name.lower()

    def the(what: str) -> str:
        return f"the {what} in {source}" if source else f"the {split} {what}"

    if loss in _CROSSENTROPY:
        if y.ndim == 2:
            if y.shape[1] != n_outputs:
                raise DataError(
                    f"{the('labels')} have {y.shape[1]} columns but the last layer has "
                    f"{n_outputs} units; {loss} needs one column per unit"
                )
            return
        if n_outputs < 2:
            raise DataError(
                f"{loss} needs a last layer with one unit per class (at least 2), got "
                f"{n_outputs}; for two classes with one unit use binary_crossentropy"
            )
        _integer_labels(y, the("labels"), loss)
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= n_outputs:
            raise DataError(
                f"{the('labels')} go from {lo} to {hi}, but the last layer has {n_outputs} "
                f"units, so {loss} needs labels in 0..{n_outputs - 1}"
                + (f"; set the last layer's units to {hi + 1}" if lo >= 0 else "")
            )
        return
    if loss == "binary_crossentropy":
        cols = 1 if y.ndim == 1 else int(np.prod(y.shape[1:]))
        if cols != n_outputs:
            raise DataError(
                f"binary_crossentropy needs one label column per output unit: the last layer "
                f"has {n_outputs} units but {the('labels')} have {cols} column(s)"
                + (
                    "; for one label of several classes use categorical_crossentropy with softmax"
                    if y.ndim == 1 and n_outputs > 1
                    else ""
                )
            )
        if y.dtype.kind in "biu" or (y.dtype.kind == "f" and np.all(y == np.round(y))):
            values = np.unique(y)
            bad = values[(values != 0) & (values != 1)]
            if bad.size:
                raise DataError(
                    f"binary_crossentropy needs {the('labels')} in {{0, 1}}, found "
                    f"{bad[:5].tolist()}; for more than two classes use categorical_crossentropy"
                )
        elif y.dtype.kind == "f" and (y.min() < 0 or y.max() > 1):
            raise DataError(
                f"binary_crossentropy needs {the('labels')} between 0 and 1, found "
                f"{float(y.min())} to {float(y.max())}"
            )
        return
    # Regression losses: one target column per output unit.
    cols = 1 if y.ndim == 1 else int(np.prod(y.shape[1:]))
    if cols != n_outputs:
        raise DataError(
            f"{loss} compares each output unit with a target column: the last layer has "
            f"{n_outputs} units but {the('targets')} have {cols} column(s)"
        )


def _integer_labels(y: np.ndarray, subject: str, loss: str) -> None:
    if y.dtype.kind in "biu":
        return
    if y.dtype.kind != "f" or not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
        raise DataError(f"{loss} needs integer class labels; {subject} are {y.dtype}")
