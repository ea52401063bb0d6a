"""Evaluate a checkpoint: loss, metrics, confusion matrix and per-class scores."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from dlcli.core.backend import xp_for
from dlcli.data import Preprocessor, load_splits, prepare_data
from dlcli.errors import DataError
from dlcli.io.checkpoint import load_checkpoint, resolve_path, restore_model
from dlcli.train.losses import LossSpec
from dlcli.train.metrics import confusion_matrix, per_class_report, predicted_labels, true_labels
from dlcli.train.trainer import evaluate_model


@dataclass
class EvalReport:
    """What `dlcli eval` shows."""

    checkpoint: str
    data: str
    samples: int
    metrics: dict[str, float]
    task: str
    class_names: list[str] | None = None
    confusion: np.ndarray | None = None
    per_class: list[dict[str, Any]] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"checkpoint": self.checkpoint, "data": self.data,
                               "samples": self.samples, **self.metrics}
        if self.confusion is not None:
            out["confusion_matrix"] = self.confusion.tolist()
            out["per_class"] = self.per_class
            out["class_names"] = self.class_names
        return out


def evaluate_checkpoint(
    path: str | os.PathLike[str],
    data: str | None = None,
    split: str = "test",
    data_dir: str | None = None,
    batch_size: int | None = None,
    progress: Any = None,
) -> EvalReport:
    """Evaluate the model in a checkpoint on its test split, another split, or a data file.

    Args:
        path: the checkpoint (`runs/<run>/checkpoints/best`, with or without .npz).
        data: a data file (npz, npy, CSV, IDX) to use instead of the configured split.
        split: "test", "validation" or "train" of the configured data when `data` is None.
    """
    ckpt = load_checkpoint(path)
    cfg, model = restore_model(ckpt)
    model.to(xp_for(cfg.device))
    loss = LossSpec.from_config(cfg.loss)
    meta = ckpt.meta
    class_names = meta.get("class_names")
    preprocessor = Preprocessor.from_dict(meta.get("preprocessing") or {"mode": "none"})
    shape = tuple(cfg.model.input_shape)
    if data is not None:
        x, y = prepare_data(data, shape, preprocessor, loss.task, class_names)
        described = data
    else:
        splits = load_splits(cfg.data, cfg.seed, shape, data_dir=data_dir, progress=progress,
                             task=loss.task)
        x, y = {"test": (splits.x_test, splits.y_test), "validation": (splits.x_val, splits.y_val),
                "train": (splits.x_train, splits.y_train)}[split]
        if x is None:
            raise DataError(
                f"the config of {path} has no {split} split; pass a data file with --data "
                f"or choose --split train"
            )
        described = f"{split} split of {splits.source}"
    n_classes = loss.n_classes(int(model.output_shape[-1]))
    logs, y_out = evaluate_model(model, loss, x, y, batch_size or cfg.data.batch_size,
                                 list(cfg.metrics), n_classes)
    report = EvalReport(str(resolve_path(path)), described, len(x), logs, loss.task, class_names)
    if loss.task == "classification" and (y.ndim == 1 or loss.binary):
        true, pred = true_labels(y, binary=loss.binary), predicted_labels(y_out)
        report.confusion = confusion_matrix(true, pred, n_classes)
        report.per_class = per_class_report(true, pred, n_classes, class_names)
    return report
