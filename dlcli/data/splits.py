"""`load_splits`: the configured data as train / validation / test arrays ready for a model."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dlcli.data.download import ProgressFn
from dlcli.data.labels import count_classes, encode_labels, resolve_task
from dlcli.data.preprocess import Preprocessor, model_inputs, normalize_inputs, split_indices
from dlcli.data.raw import CLASSIFICATION, REGRESSION
from dlcli.data.sources import read_configured
from dlcli.errors import DataError

if TYPE_CHECKING:  # only a type here: loading data does not import pydantic
    from dlcli.config.schema import DataConfig


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


def load_splits(
    data: DataConfig,
    seed: int,
    input_shape: Sequence[int],
    data_dir: str | os.PathLike[str] | None = None,
    progress: ProgressFn | None = None,
    *,
    task: str | None = None,
) -> Splits:
    """Load the configured dataset into train / validation / test splits.

    Args:
        data: the data section of a validated config (`Config.data`; build one alone with
            `DataConfig(dataset="moons")` or `DataConfig.model_validate({...})`).
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

    Example:
        >>> s = load_splits(DataConfig(dataset="moons", validation_split=0.2), 0, (2,))
        >>> len(s.x_train), len(s.x_val)
        (800, 200)
    """
    if task not in (None, CLASSIFICATION, REGRESSION):
        raise ValueError(f"task must be {CLASSIFICATION!r} or {REGRESSION!r}, got {task!r}")
    preprocessor = Preprocessor(data.normalize)
    val_split, test_split = data.validation_split, data.test_split

    raw = read_configured(data, seed, data_dir, progress)
    task = resolve_task(task, raw)
    # Before splitting, so that a bad value is reported at its row of the file.
    raw.check_finite_labels(task)
    class_names = encode_labels(raw, task)
    parts = raw.parts
    x_train, y_train = parts["train"]

    # Test first, then validation from what is left, each a fraction of the whole. Whether a
    # fraction leaves anything to train on depends on the sample count, so split_indices says.
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
        ready[split] = (model_inputs(x, shape, split), y)

    preprocessor.fit(ready["train"][0])
    out = {s: None if p is None else (normalize_inputs(preprocessor, p[0], s), p[1])
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
        n_classes=count_classes(task, class_names, [p[1] for p in out.values() if p is not None]),
        source=raw.source,
    )
