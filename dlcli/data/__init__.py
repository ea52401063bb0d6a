"""Data: built-in, synthetic or file datasets, split, checked, shaped and normalized for a model.

`load_splits` is the one entry point the trainer uses; `check_labels` checks labels against the
model's last layer once that is known.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dlcli.data.builtin import BUILTINS, load_builtin
from dlcli.data.download import ProgressFn
from dlcli.data.files import FileData, read_source
from dlcli.data.preprocess import (
    Preprocessor,
    check_finite,
    check_float32_range,
    fit_input_shape,
    split_indices,
)
from dlcli.data.synthetic import SYNTHETIC, make_synthetic
from dlcli.errors import DataError

__all__ = [
    "BUILTINS",
    "CLASSIFICATION",
    "DATASETS",
    "REGRESSION",
    "SYNTHETIC",
    "Preprocessor",
    "Splits",
    "check_labels",
    "load_splits",
]

CLASSIFICATION = "classification"
REGRESSION = "regression"
DATASETS = (*BUILTINS, *SYNTHETIC)
_CROSSENTROPY = ("categorical_crossentropy", "sparse_categorical_crossentropy")


@dataclass
class Splits:
    """Arrays ready for the model.

    x_* are float32, already normalized by `preprocessor` (fit on x_train only) and shaped
    (N, *model.input_shape). Classification labels are int64 (N,) (or float32 (N, k) for
    multi-column labels); regression targets float32 (N, k). Validation and test may be None.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    class_names: list[str] | None
    preprocessor: Preprocessor
    task: str  # "classification" | "regression"
    n_classes: int | None  # None for regression
    source: str = ""  # where the data came from, for messages and run metadata


@dataclass
class _Raw:
    """Arrays as read, before splitting and checks."""

    parts: dict[str, tuple[np.ndarray, np.ndarray] | None]  # "train", "validation", "test"
    class_names: list[str] | None
    task: str | None  # what the dataset itself is, when it says
    source: str
    files: dict[str, FileData | None] = field(default_factory=dict)  # the file of each part
    single: str | None = None  # one data file named in messages instead of "the train ..."

    def subject(self, split: str, what: str) -> str:
        """How messages name a part's labels or targets: "the test labels", "the labels in F"."""
        return f"the {what} in {self.single}" if self.single else f"the {split} {what}"

    def check_finite_labels(self, task: str) -> None:
        """NaN/inf labels or targets (and targets beyond float32), reported at their row in
        the file, before any split."""
        what = "targets" if task == REGRESSION else "labels"
        for split, part in self.parts.items():
            if part is None:
                continue
            f = self.files.get(split)
            name = "" if self.single else split
            source = str(f.path) if f is not None else self.source
            where = f.where if f is not None else None
            check_finite(part[1], name, what, source=source, where=where)
            if task == REGRESSION:  # class ids are checked as integers instead
                check_float32_range(part[1], name, what, source=source, where=where)


def _get(cfg: Any, name: str, default: Any = None) -> Any:
    if isinstance(cfg, dict):
        return cfg.get(name, default)
    return getattr(cfg, name, default)


def load_splits(
    cfg: Any,
    seed: int,
    input_shape: Sequence[int],
    data_dir: str | os.PathLike[str] | None = None,
    progress: ProgressFn | None = None,
    *,
    task: str | None = None,
) -> Splits:
    """Load the configured dataset into train / validation / test splits.

    Args:
        cfg: the DataConfig (read by attribute: dataset, train, validation, test,
            validation_split, test_split, normalize, n_samples, noise, n_classes, n_features).
        seed: seeds synthetic data and the validation/test splits.
        input_shape: model.input_shape (batch axis excluded).
        data_dir: searched first for built-in datasets (the CLI's --data-dir).
        progress: progress(bytes_done, bytes_total_or_None) while a file downloads.
        task: "classification" (the loss is a crossentropy) or "regression"; None infers it
            from the dataset and the label dtype.
    Returns:
        A Splits. Fractions: test_split and validation_split are fractions of all samples
        (files, synthetic); for built-ins validation_split is a fraction of the official train
        split. Classification splits are stratified; all splits are seeded.
    Raises:
        DataError: before any training step, for data that cannot be read or does not fit.
    """
    if task not in (None, CLASSIFICATION, REGRESSION):
        raise ValueError(f"task must be {CLASSIFICATION!r} or {REGRESSION!r}, got {task!r}")
    preprocessor = Preprocessor(_get(cfg, "normalize", "none") or "none")
    val_split = float(_get(cfg, "validation_split", 0.0) or 0.0)
    test_split = float(_get(cfg, "test_split", 0.0) or 0.0)
    for key, v in (("validation_split", val_split), ("test_split", test_split)):
        if not 0.0 <= v < 1.0:
            raise DataError(f"data.{key} must be in [0, 1), got {v}")
    if val_split + test_split >= 1.0:
        raise DataError(
            f"data.validation_split + data.test_split = {val_split + test_split} leaves "
            f"nothing to train on; their sum must be below 1"
        )

    raw = _load_raw(cfg, seed, data_dir, progress, val_split, test_split)
    task = _resolve_task(task, raw)
    # Before splitting, so that a bad value is reported at its row of the file.
    raw.check_finite_labels(task)
    class_names = _encode_labels(raw, task)
    parts = raw.parts
    x_train, y_train = parts["train"]

    # Test first, then validation from what is left, each a fraction of the whole.
    stratify = task == CLASSIFICATION and y_train.ndim == 1
    n_total = len(x_train)
    if parts["test"] is None and test_split > 0:
        rng = np.random.default_rng([0x7E57, seed & 0xFFFF_FFFF])
        keep, take = split_indices(
            y_train, test_split, rng, stratify, f"data.test_split={test_split}"
        )
        parts["test"] = (x_train[take], y_train[take])
        x_train, y_train = x_train[keep], y_train[keep]
    if parts["validation"] is None and val_split > 0:
        rng = np.random.default_rng([0x7A1, seed & 0xFFFF_FFFF])
        fraction = min(val_split * n_total / max(len(x_train), 1), 1.0)
        keep, take = split_indices(
            y_train, fraction, rng, stratify, f"data.validation_split={val_split}"
        )
        parts["validation"] = (x_train[take], y_train[take])
        x_train, y_train = x_train[keep], y_train[keep]
    parts["train"] = (x_train, y_train)

    shape = tuple(int(d) for d in input_shape)
    ready: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}
    for split, part in parts.items():
        if part is None:
            ready[split] = None
            continue
        x, y = part
        if len(x) == 0:
            raise DataError(f"the {split} split of {raw.source} has no samples")
        ready[split] = (_model_inputs(x, shape, split), y)

    preprocessor.fit(ready["train"][0])
    out = {s: None if p is None else (_normalized(preprocessor, p[0], s), p[1])
           for s, p in ready.items()}
    (xt, yt), val, test = out["train"], out["validation"], out["test"]
    return Splits(
        x_train=xt,
        y_train=yt,
        x_val=None if val is None else val[0],
        y_val=None if val is None else val[1],
        x_test=None if test is None else test[0],
        y_test=None if test is None else test[1],
        class_names=class_names,
        preprocessor=preprocessor,
        task=task,
        n_classes=_n_classes(task, class_names, [p[1] for p in out.values() if p is not None]),
        source=raw.source,
    )


def _normalized(preprocessor: Preprocessor, x: np.ndarray, split: str) -> np.ndarray:
    """preprocessor.apply(x), refused when float32 overflows (values near its limit)."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = preprocessor.apply(x)
    if not np.isfinite(out).all():
        raise DataError(
            f"the {split} inputs overflow float32 after normalize: {preprocessor.mode} (their "
            f"values come close to float32's limit, about 3.4e38); rescale them"
        )
    return out


def _load_raw(
    cfg: Any,
    seed: int,
    data_dir: str | os.PathLike[str] | None,
    progress: ProgressFn | None,
    val_split: float,
    test_split: float,
) -> _Raw:
    dataset, train = _get(cfg, "dataset"), _get(cfg, "train")
    validation, test = _get(cfg, "validation"), _get(cfg, "test")
    if (dataset is None) == (train is None):
        raise DataError(
            "data: set exactly one of data.dataset (a named dataset) or data.train (files)"
        )
    if validation is not None and val_split > 0:
        raise DataError("data: set data.validation (a file) or data.validation_split, not both")
    if test is not None and test_split > 0:
        raise DataError("data: set data.test (a file) or data.test_split, not both")

    if train is not None:
        # read_source checks the inputs (numbers, finite) with the file's own row numbers.
        files = {"train": read_source(train, "data.train")}
        for key, source in (("validation", validation), ("test", test)):
            files[key] = None if source is None else read_source(source, f"data.{key}")
        parts = {k: None if f is None else (f.x, f.y) for k, f in files.items()}
        return _Raw(parts, None, None, _describe(train), files)

    name = str(dataset).strip().lower().replace("-", "_")
    for key in ("validation", "test"):
        if _get(cfg, key) is not None:
            raise DataError(f"data.{key}: files go with data.train, not with data.dataset")
    if name in BUILTINS:
        for key in ("n_classes", "n_features"):
            if _get(cfg, key) is not None:
                raise DataError(f"data.{key} applies to synthetic datasets, not to {name}")
        if test_split > 0:
            raise DataError(f"data.test_split: {name} has an official test split; leave it at 0")
        b = load_builtin(name, data_dir=data_dir, progress=progress)
        parts = {"train": (b.x_train, b.y_train), "validation": None, "test": (b.x_test, b.y_test)}
        return _checked(_Raw(parts, b.class_names, CLASSIFICATION, f"{name} ({b.source})"))
    if name in SYNTHETIC:
        n_samples = int(_get(cfg, "n_samples", 1000))
        s = make_synthetic(
            name,
            n_samples=n_samples,
            noise=float(_get(cfg, "noise", 0.1)),
            seed=seed,
            n_classes=_get(cfg, "n_classes"),
            n_features=_get(cfg, "n_features"),
        )
        parts = {"train": (s.x, s.y), "validation": None, "test": None}
        raw = _Raw(parts, s.class_names, s.task, f"{name} (synthetic, {n_samples} samples)")
        return _checked(raw)
    close = difflib.get_close_matches(name, DATASETS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise DataError(
        f"data.dataset: unknown dataset {dataset!r}{hint} Known: {', '.join(DATASETS)}; "
        f"for your own files use data.train"
    )


def _checked(raw: _Raw) -> _Raw:
    """raw, once its inputs are known to be finite (files check theirs as they are read)."""
    for split, part in raw.parts.items():
        if part is not None:
            check_finite(part[0], split, source=raw.source)
    return raw


def _describe(source: Any) -> str:
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    path = _get(source, "path")
    return os.fspath(path) if path is not None else repr(source)


def _resolve_task(task: str | None, raw: _Raw) -> str:
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


def _encode_labels(raw: _Raw, task: str) -> list[str] | None:
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
            strings = _one_text_column(y, raw.subject(split, "labels")).astype(str)
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


def _one_text_column(y: np.ndarray, subject: str) -> np.ndarray:
    """Text labels as (N,): one class name per sample."""
    if y.ndim == 2 and y.shape[1] == 1:
        return y[:, 0]
    if y.ndim != 1:
        raise DataError(
            f"{subject} are text of shape {list(y.shape)}; text labels must be one class name "
            f"per sample"
        )
    return y


def _n_classes(task: str, class_names: list[str] | None, ys: list[np.ndarray]) -> int | None:
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


def prepare_data(
    source: Any,
    input_shape: Sequence[int],
    preprocessor: Preprocessor,
    task: str,
    class_names: list[str] | None = None,
    key: str = "--data",
    labels_key: str = "--labels",
) -> tuple[np.ndarray, np.ndarray]:
    """Read a data file for a trained model: its stored preprocessing and class names apply.

    Args:
        source: a path, or a dict with path and labels (for .npy/IDX features).
        key, labels_key: how messages name the file and its labels file (CLI options).
    Raises:
        DataError: unreadable file, wrong input shape, non-finite values, unknown labels, text
            labels for a model that has no class names.
    """
    f = read_source(source, key, labels_key=labels_key)
    x, y = f.x, f.y
    name = str(f.path)
    raw = _Raw({"train": (x, y), "validation": None, "test": None}, class_names, None, name,
               {"train": f}, single=name)
    raw.check_finite_labels(task)
    if task == CLASSIFICATION and y.dtype.kind in "USO":
        if not class_names:
            # Mapping text by sort order could silently pair labels with the wrong outputs.
            raise DataError(
                f"{key}: the labels in {name} are text (e.g. {str(y.ravel()[0])!r}) but the "
                f"model has no class names (it was trained on numeric class ids); give the "
                f"labels as the class ids (0, 1, ...) it was trained with"
            )
        y = _one_text_column(y, f"the labels in {name}")
        index = {c: i for i, c in enumerate(class_names)}
        unknown = sorted({str(v) for v in y} - set(index))
        if unknown:
            raise DataError(
                f"{key}: the labels in {name} include {unknown[:5]}, which are not classes of "
                f"this model ({class_names})"
            )
        y = np.array([index[str(v)] for v in y], dtype=np.int64)
    else:
        _encode_labels(raw, task)
        x, y = raw.parts["train"]
    x = _model_inputs(x, tuple(int(d) for d in input_shape), name)
    return _normalized(preprocessor, x, name), y


def _model_inputs(x: np.ndarray, shape: tuple[int, ...], split: str) -> np.ndarray:
    """Inputs checked (numbers) and shaped as the model takes them; finiteness is checked
    when they are read, where rows can still be named by their place in the file."""
    if x.dtype.kind not in "biuf":
        raise DataError(f"the {split} inputs are not numbers (dtype {x.dtype})")
    return fit_input_shape(x, shape, split)
