"""Weights files: safetensors (PyTorch / Hugging Face) and npz, keyed "layer/weight".

The names are the layer names `dlcli summary` shows and the weight names of Keras (kernel,
bias, gamma, beta, moving_mean, moving_variance), in Keras's layouts (Dense kernel (in, out),
Conv2D kernel (kh, kw, in, out)). The metadata holds the resolved config, the preprocessing and
the class names as JSON, so a file rebuilds the model on its own (`load_weights_file`).
"""

from __future__ import annotations

import json
import os
import stat
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from dlcli.errors import CheckpointError
from dlcli.extras import require
from dlcli.io.checkpoint import MAX_BYTES

WEIGHTS_FORMAT = "dlcli-weights"
NPZ_META = "__metadata__"


def _metadata(meta: dict[str, Any]) -> dict[str, str]:
    """Every value as a string (safetensors stores str -> str): JSON for non-strings."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}


def write_safetensors(path: Path, weights: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write weights and metadata to a .safetensors file."""
    st = require("safetensors.numpy", "export", "safetensors export")
    arrays = {k: np.ascontiguousarray(v) for k, v in weights.items()}
    st.save_file(arrays, str(path), metadata=_metadata({"format": WEIGHTS_FORMAT, **meta}))


def write_npz(path: Path, weights: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write weights and, under __metadata__, the metadata as one JSON string (no pickle)."""
    text = json.dumps({"format": WEIGHTS_FORMAT, **meta})
    with open(path, "wb") as f:
        np.savez(f, **{k: np.asarray(v) for k, v in weights.items()}, **{NPZ_META: np.array(text)})


def load_weights_file(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read weights and metadata (config, preprocessing, class_names) of a file `write_*` made.

    Raises:
        CheckpointError: not such a file, or unreadable.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"no weights file at {path}")
    if not p.is_file() or not stat.S_ISREG(os.stat(p).st_mode):
        raise CheckpointError(f"{p} is not a regular file; give a weights file")
    if p.suffix == ".safetensors":
        st = require("safetensors", "export", "reading safetensors files")
        try:
            with st.safe_open(str(p), framework="np") as f:
                raw = dict(f.metadata() or {})
                weights = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
        except Exception as e:  # safetensors raises its own error types
            raise CheckpointError(f"{p} is not a readable safetensors file: {e}") from e
        meta: dict[str, Any] = {}
        for k, v in raw.items():
            try:
                meta[k] = json.loads(v)
            except json.JSONDecodeError:
                meta[k] = v
    else:
        try:
            with zipfile.ZipFile(p) as z:  # the directory's sizes bound what np.load inflates
                declared = sum(i.file_size for i in z.infolist())
            if declared > MAX_BYTES:
                raise CheckpointError(f"{p} declares {declared:,} bytes of arrays, more than a "
                                      f"weights file may hold ({MAX_BYTES:,})")
            with np.load(p, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise CheckpointError(f"{p} is not a readable npz file: {e}") from e
        if NPZ_META not in arrays:
            raise CheckpointError(f"{p} is not a dlcli weights file (no {NPZ_META})")
        meta = json.loads(str(arrays.pop(NPZ_META)))
        weights = arrays
    if meta.get("format") != WEIGHTS_FORMAT or not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"{p} is not a dlcli weights file (format {meta.get('format')!r})")
    return weights, meta
