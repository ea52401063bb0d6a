"""Evaluate a checkpoint: loss, metrics, confusion matrix and per-class scores."""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlcli.config.schema import FileSource
from dlcli.core import Tensor, no_grad
from dlcli.core.backend import get_array_module, to_host, xp_for
from dlcli.data import Preprocessor, check_labels, load_splits, prepare_data
from dlcli.errors import DataError, DlcliError
from dlcli.io.checkpoint import load_checkpoint, resolve_path
from dlcli.nn.restore import restore_model
from dlcli.nn.sequential import Sequential
from dlcli.train.losses import LossSpec
from dlcli.train.metrics import (
    compute_metrics,
    confusion_matrix,
    per_class_report,
    predicted_labels,
    true_labels,
)


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
    warnings: list[str] = field(default_factory=list)  # e.g. a diverged model's outputs

    def to_json(self) -> dict[str, Any]:
        """Plain Python values for strict JSON: NaN and infinity become None (null)."""
        out: dict[str, Any] = {"checkpoint": self.checkpoint, "data": self.data,
                               "samples": self.samples, **self.metrics}
        if self.confusion is not None:
            out["confusion_matrix"] = self.confusion.tolist()
            out["per_class"] = self.per_class
            out["class_names"] = self.class_names
        out["warnings"] = list(self.warnings)
        return _plain(out)


def _plain(obj: Any) -> Any:
    """obj with numpy scalars as Python numbers and non-finite floats as None."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def evaluate_model(
    model: Sequential, loss: LossSpec, x: np.ndarray, y: np.ndarray, batch_size: int,
    metrics: list[Any], n_classes: int, unsmoothed: bool = False,
) -> tuple[dict[str, float], np.ndarray]:
    """Loss and metrics of `model` on (x, y) at inference, in batches; also the outputs.

    unsmoothed: with label smoothing, also `unsmoothed_loss`, the loss on the true labels.
    """
    xp = get_array_module(model.weights[0].data) if model.weights else np
    # sums and outputs stay on the device and are read once at the end (two transfers);
    # float64 sums of float32 losses times batch sizes, as Python floats would add them
    total, plain_total, outputs = xp.zeros((), np.float64), xp.zeros((), np.float64), []
    with no_grad():
        reg = model.regularization_loss()
        for i in range(0, len(x), batch_size):
            xb, yb = xp.asarray(x[i:i + batch_size]), xp.asarray(y[i:i + batch_size])
            value, out, plain = loss.compute(model, Tensor(xb), yb, training=False,
                                             plain=unsmoothed)
            total += value.data.astype(np.float64) * len(xb)
            if plain is not None:
                plain_total += plain.data.astype(np.float64) * len(xb)
            outputs.append(out)
    penalty = xp.zeros((), np.float64) if reg is None else reg.data.astype(np.float64)
    total, plain_total, penalty = (float(v) for v in to_host(xp.stack([total, plain_total,
                                                                       penalty])))
    y_out = to_host(xp.concatenate(outputs))
    logs = {"loss": total / len(x) + penalty}
    if unsmoothed and loss.label_smoothing:
        logs["unsmoothed_loss"] = plain_total / len(x) + penalty
    if metrics:
        logs.update(compute_metrics(metrics, y, y_out, loss.task, n_classes))
    return logs, y_out



def evaluate_checkpoint(
    path: str | os.PathLike[str],
    data: str | None = None,
    split: str = "test",
    labels: str | None = None,
    data_dir: str | None = None,
    batch_size: int | None = None,
    progress: Any = None,
    device: str = "cpu",
) -> EvalReport:
    """Evaluate the model in a checkpoint on its test split, another split, or a data file.

    Args:
        path: the checkpoint (`runs/<run>/checkpoints/best`, with or without .npz).
        data: a data file (npz, npy, CSV, IDX) to use instead of the configured split.
        split: "test", "validation" or "train" of the configured data when `data` is None.
        labels: the labels file (.npy or IDX) of a `data` file that holds features only.
        device: "cpu" or "gpu", whatever device the checkpoint was trained on.
    Returns:
        An EvalReport; `warnings` says when the model's outputs or metrics are not finite.
    Raises:
        DataError: data that cannot be read or does not fit the model.
    """
    ckpt = load_checkpoint(path)
    cfg, model = restore_model(ckpt)
    model.to(xp_for(device))
    loss = LossSpec.from_config(cfg.loss)
    meta = ckpt.meta
    class_names = meta.get("class_names")
    preprocessor = Preprocessor.from_dict(meta.get("preprocessing") or {"mode": "none"})
    shape = tuple(cfg.model.input_shape)
    units = int(model.output_shape[-1])
    if labels is not None and data is None:
        raise DataError("--labels goes with --data (the labels of that file)")
    if data is not None:
        source = data if labels is None else FileSource(path=data, labels=labels)
        x, y = prepare_data(source, shape, preprocessor, loss.task, class_names)
        check_labels(y, units, loss.name, source=data)
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
        check_labels(y, units, loss.name, split=split)
        described = f"{split} split of {splits.source}"
    n_classes = loss.n_classes(units)
    report = EvalReport(str(resolve_path(path)), described, len(x), {}, loss.task, class_names)
    # A diverged model overflows; that is reported once, as a warning, not by numpy per op.
    with np.errstate(all="ignore"):
        report.metrics, y_out = evaluate_model(model, loss, x, y,
                                               batch_size or cfg.data.batch_size,
                                               list(cfg.metrics), n_classes, unsmoothed=True)
        if loss.task == "classification" and (y.ndim == 1 or loss.binary):
            true, pred = true_labels(y, binary=loss.binary), predicted_labels(y_out)
            report.confusion = confusion_matrix(true, pred, n_classes)
            report.per_class = per_class_report(true, pred, n_classes, class_names)
    bad = ~np.isfinite(y_out.reshape(len(y_out), -1)).all(axis=1)
    if bad.any():
        report.warnings.append(
            f"the model's outputs are not finite for {int(bad.sum()):,} of {len(bad):,} "
            f"samples; the metrics are not meaningful (has training diverged?)"
        )
    elif not all(math.isfinite(v) for v in report.metrics.values()):
        names = [k for k, v in report.metrics.items() if not math.isfinite(v)]
        report.warnings.append(f"not finite: {', '.join(names)}")
    return report


def plots_folder(checkpoint: str | os.PathLike[str]) -> Path:
    """Where eval's pictures go by default: the run directory of a checkpoint in
    `<run>/checkpoints/`, else the checkpoint's own folder."""
    folder = resolve_path(checkpoint).parent
    return folder.parent if folder.name == "checkpoints" else folder


def write_confusion_plot(report: EvalReport,
                         folder: str | os.PathLike[str] | None = None) -> Path | None:
    """confusion_matrix.png of a classification report, normalized per true class.

    Args:
        report: what evaluate_checkpoint returned.
        folder: where to write it (created if missing); default: plots_folder(checkpoint).
    Returns:
        The picture's path, or None for regression or without matplotlib (dlcli[plot]).
    Raises:
        DlcliError: the folder or the file cannot be written.
    """
    if report.confusion is None or importlib.util.find_spec("matplotlib") is None:
        return None
    from dlcli.runs.plots import plot_confusion

    target = plots_folder(report.checkpoint) if folder is None else Path(folder)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DlcliError(f"cannot create {target}: {e.strerror or e}") from None
    data = report.data if len(report.data) <= 60 else "…" + report.data[-59:]
    return plot_confusion(report.confusion, report.class_names, target / "confusion_matrix.png",
                          title=f"confusion matrix, normalized per true class\n{data}")
