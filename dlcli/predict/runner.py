"""Run a trained model on raw inputs: from a dlcli checkpoint, or from an exported .onnx file.

Both take inputs as the dataset stores them (e.g. pixels 0-255) and give the same answers: the
checkpoint applies its stored preprocessing (never refitted), the ONNX graph holds it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlcli.errors import CheckpointError, DlcliError
from dlcli.extras import require


@dataclass
class ModelInfo:
    """What a caller needs to know about a model to feed it and read its outputs."""

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    task: str  # "classification" | "regression"
    output_activation: str | None  # the activation of the outputs: softmax, sigmoid, ...
    class_names: list[str] | None = None
    preprocessing: dict[str, Any] = field(default_factory=lambda: {"mode": "none"})
    config: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def probabilities(self) -> bool:
        return self.task == "classification" and self.output_activation in ("softmax", "sigmoid")


def final_activation(model: Any, loss: Any) -> str | None:
    """The activation to add after the model's last layer so that a classifier trained from
    logits (linear last layer, from_logits: true) still outputs probabilities, as `dlcli eval`."""
    fused = loss.fused_activation()
    if fused is not None and loss.from_logits and model.output_activation in (None, "linear"):
        return fused
    return None


def model_outputs(
    model: Any, x: np.ndarray, batch_size: int, after: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """The model's inference outputs (float32, numpy) for preprocessed inputs, in batches.

    Args:
        after: "softmax" or "sigmoid" to apply to the outputs (see final_activation).
        progress: called with the number of samples done after each batch.
    """
    from dlcli.core import Tensor, no_grad, ops
    from dlcli.core.backend import get_array_module, to_host

    xp = get_array_module(model.weights[0].data) if model.weights else np
    outs = []
    with no_grad(), np.errstate(all="ignore"):
        for i in range(0, len(x), batch_size):
            y = model(Tensor(xp.asarray(x[i:i + batch_size])), training=False)
            if after == "softmax":
                y = ops.softmax(y)
            elif after == "sigmoid":
                y = ops.sigmoid(y)
            outs.append(to_host(y.data))
            if progress is not None:
                progress(len(outs[-1]))
    return np.concatenate(outs) if outs else np.zeros((0, *model.output_shape), np.float32)


class CheckpointModel:
    """A dlcli checkpoint as a predictor of raw inputs."""

    kind = "checkpoint"

    def __init__(self, path: str | os.PathLike[str], device: str = "cpu") -> None:
        from dlcli.core.backend import xp_for
        from dlcli.data import Preprocessor
        from dlcli.io.checkpoint import load_checkpoint, resolve_path
        from dlcli.nn.restore import restore_model
        from dlcli.train.losses import LossSpec

        ckpt = _weights_file(path) or load_checkpoint(path)
        self.cfg, self.model = restore_model(ckpt)
        self.model.to(xp_for(device))
        self.loss = LossSpec.from_config(self.cfg.loss)
        self.after = final_activation(self.model, self.loss)
        prep = ckpt.meta.get("preprocessing") or {"mode": "none"}
        self.preprocessor = Preprocessor.from_dict(prep)
        self.info = ModelInfo(
            input_shape=tuple(self.model.input_shape),
            output_shape=tuple(self.model.output_shape),
            task=self.loss.task,
            output_activation=self.after or self.model.output_activation,
            class_names=ckpt.meta.get("class_names"),
            preprocessing=prep,
            config=ckpt.config,
            source=str(resolve_path(path)),
        )

    def predict(self, x: np.ndarray, batch_size: int = 256,
                progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Outputs for raw inputs of shape (N, *input_shape)."""
        return model_outputs(self.model, self.preprocessor.apply(x), batch_size, self.after,
                             progress)


class OnnxModel:
    """An .onnx file written by `dlcli export`, run with onnxruntime."""

    kind = "onnx"

    def __init__(self, path: str | os.PathLike[str], threads: int = 0) -> None:
        ort = require("onnxruntime", "export", "running an .onnx model")
        p = Path(path)
        if not p.is_file():
            raise DlcliError(f"no model at {path}: the file does not exist")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3  # errors only: its warnings are not for our users
        try:
            self.session = ort.InferenceSession(str(p), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for bad files
            raise DlcliError(f"{p} is not a readable ONNX model: {str(e).splitlines()[0]}") from e
        meta = self.session.get_modelmeta().custom_metadata_map
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise DlcliError(f"{p} has {len(inputs)} inputs and {len(outputs)} outputs; "
                             "dlcli predict runs models with one of each")
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        shape = inputs[0].shape[1:]
        if not all(isinstance(d, int) for d in shape):
            raise DlcliError(f"{p}: the input shape {inputs[0].shape} is not fixed beyond the "
                             "batch axis")

        def load(key: str, default: Any) -> Any:
            try:
                return json.loads(meta[key]) if key in meta else default
            except json.JSONDecodeError:
                raise CheckpointError(f"{p}: metadata {key!r} is not valid JSON") from None

        self.info = ModelInfo(
            input_shape=tuple(shape),
            output_shape=tuple(d if isinstance(d, int) else -1 for d in outputs[0].shape[1:]),
            task=meta.get("task", "regression"),
            output_activation=meta.get("output_activation") or None,
            class_names=load("class_names", None),
            preprocessing=load("preprocessing", {"mode": "none"}),
            config=load("config", {}),
            source=str(p),
        )

    def predict(self, x: np.ndarray, batch_size: int = 256,
                progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Outputs for raw inputs of shape (N, *input_shape)."""
        x = np.asarray(x, dtype=np.float32)
        outs = []
        for i in range(0, len(x), batch_size):
            feed = {self.input_name: x[i:i + batch_size]}
            outs.append(self.session.run([self.output_name], feed)[0])
            if progress is not None:
                progress(len(outs[-1]))
        if not outs:
            return np.zeros((0, *self.info.output_shape), np.float32)
        return np.concatenate(outs)


def _weights_file(path: str | os.PathLike[str]) -> Any:
    """A Checkpoint from a .safetensors or .npz file that `dlcli export` wrote, else None."""
    import zipfile

    from dlcli.export.weights import NPZ_META, load_weights_file
    from dlcli.io.checkpoint import Checkpoint

    p = Path(path)
    if not p.is_file():  # missing, a folder, a FIFO: load_checkpoint says what is wrong
        return None
    if p.suffix == ".npz":
        try:
            with zipfile.ZipFile(p) as z:
                if f"{NPZ_META}.npy" not in z.namelist():
                    return None
        except (OSError, zipfile.BadZipFile):
            return None  # load_checkpoint says what is wrong with it
    elif p.suffix != ".safetensors":
        return None
    weights, meta = load_weights_file(p)
    keep = {k: meta[k] for k in ("preprocessing", "class_names") if k in meta}
    return Checkpoint(config=meta["config"], weights=weights, meta=keep)


def open_model(path: str | os.PathLike[str], device: str = "cpu") -> CheckpointModel | OnnxModel:
    """A checkpoint, an .onnx file, or a .safetensors/.npz weights file `dlcli export` wrote."""
    if str(path).lower().endswith(".onnx"):
        return OnnxModel(path)
    return CheckpointModel(path, device=device)
