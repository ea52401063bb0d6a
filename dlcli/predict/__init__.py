"""Predict: run a checkpoint or an exported .onnx file on new raw inputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from dlcli.predict.inputs import Inputs, read_inputs
from dlcli.predict.results import Predictions
from dlcli.predict.runner import CheckpointModel, ModelInfo, OnnxModel, open_model

__all__ = [
    "CheckpointModel", "Inputs", "ModelInfo", "OnnxModel", "Predictions", "open_model", "predict",
    "read_inputs",
]  # fmt: skip


def _csv_target(config: dict[str, Any]) -> str | int | None:
    """The target column of the training CSV (data.train.target), when the config names one."""
    train = (config.get("data") or {}).get("train")
    return train.get("target") if isinstance(train, dict) else None


def predict(
    model_path: str, inputs: list[str], *, batch_size: int = 256, resize: bool = False,
    progress: Callable[[int], None] | None = None, before: Callable[[int], None] | None = None,
    device: str = "cpu",
) -> Predictions:
    """Outputs of a checkpoint or .onnx model for files of raw inputs.

    Args:
        before: called with the number of inputs once they are read (to size a progress bar).
        progress: called with the number of inputs done after each batch.
        device: "cpu" or "gpu" for a checkpoint (an .onnx file runs in onnxruntime).
    """
    model = open_model(model_path, device=device)
    data = read_inputs(inputs, model.info.input_shape, resize=resize,
                       target=_csv_target(model.info.config))
    if before is not None:
        before(len(data.x))
    outputs = model.predict(data.x, batch_size=batch_size, progress=progress)
    return Predictions(data.names, np.asarray(outputs), model.info)
