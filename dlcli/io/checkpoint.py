"""Checkpoints: one self-contained npz file (arrays) with JSON metadata; no pickle anywhere.

Layout inside the npz: `weights/<layer>/<weight>` arrays, `optimizer/<slot>` arrays,
`state/<name>` arrays of the trainer (where an interrupted epoch stopped), and
`__meta__`, a uint8 array holding UTF-8 JSON (config, epoch, random states, preprocessing,
class names, format version). Files are written to a temporary name and renamed, so a crash
never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlcli import __version__
from dlcli.errors import CheckpointError

FORMAT = "dlcli-checkpoint"
FORMAT_VERSION = 1
SUFFIX = ".npz"


@dataclass
class Checkpoint:
    """Everything needed to evaluate, resume or export a model."""

    config: dict[str, Any]
    weights: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)  # epoch, rng states, preprocessing, ...
    state: dict[str, np.ndarray] = field(default_factory=dict)  # trainer arrays (epoch position)

    @property
    def epoch(self) -> int:
        return int(self.meta.get("epoch", 0))


def resolve_path(path: str | os.PathLike[str]) -> Path:
    """Accept `checkpoints/best` for `checkpoints/best.npz`."""
    p = Path(path)
    if not p.exists() and p.suffix != SUFFIX and p.with_name(p.name + SUFFIX).exists():
        return p.with_name(p.name + SUFFIX)
    return p


def is_checkpoint(path: str | os.PathLike[str]) -> bool:
    """True for an existing file that starts like a zip (npz) archive, or one named *.npz."""
    p = resolve_path(path)
    if p.suffix == SUFFIX:
        return True
    try:
        with open(p, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def save_checkpoint(path: str | os.PathLike[str], ckpt: Checkpoint) -> Path:
    """Write atomically: a temporary file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    if path.suffix != SUFFIX:
        path = path.with_name(path.name + SUFFIX)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dlcli_version": __version__,
        "config": ckpt.config,
        **ckpt.meta,
    }
    arrays: dict[str, np.ndarray] = {"__meta__": np.frombuffer(json.dumps(meta).encode(), np.uint8)}
    arrays.update({f"weights/{k}": np.asarray(v) for k, v in ckpt.weights.items()})
    arrays.update({f"optimizer/{k}": np.asarray(v) for k, v in ckpt.optimizer.items()})
    arrays.update({f"state/{k}": np.asarray(v) for k, v in ckpt.state.items()})
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def clean_temporary_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files a killed save_checkpoint left in `folder`; return them."""
    removed = []
    for p in Path(folder).glob(f".*{SUFFIX}.*.tmp"):
        try:
            p.unlink()
            removed.append(p)
        except OSError:
            pass  # not ours to fight over; it stays
    return removed


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint; any problem is a CheckpointError that says what is wrong."""
    p = resolve_path(path)
    if not p.exists():
        raise CheckpointError(f"no checkpoint at {path}: the file does not exist")
    if p.is_dir():
        raise CheckpointError(
            f"{path} is a folder; give a checkpoint file, "
            f"e.g. {Path(path) / 'checkpoints' / 'best'}"
        )
    try:
        data = p.read_bytes()
        if not data.startswith(b"PK"):
            raise CheckpointError(f"{p} is not a dlcli checkpoint (not an npz archive)")
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise CheckpointError(
            f"{p} is not a readable dlcli checkpoint (corrupt or truncated: {e})"
        ) from e
    if "__meta__" not in arrays:
        raise CheckpointError(f"{p} is an npz file but not a dlcli checkpoint (no metadata)")
    try:
        meta = json.loads(arrays.pop("__meta__").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{p} has corrupt metadata: {e}") from e
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not a dlcli checkpoint (format {meta.get('format')!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{p} has checkpoint format version {version}; this dlcli ({__version__}) reads up to "
            f"{FORMAT_VERSION}: upgrade dlcli"
        )
    weights = {k[len("weights/"):]: v for k, v in arrays.items() if k.startswith("weights/")}
    optimizer = {k[len("optimizer/"):]: v for k, v in arrays.items() if k.startswith("optimizer/")}
    state = {k[len("state/"):]: v for k, v in arrays.items() if k.startswith("state/")}
    config = meta.pop("config", None)
    if not isinstance(config, dict):
        raise CheckpointError(f"{p} holds no model config")
    return Checkpoint(config=config, weights=weights, optimizer=optimizer, meta=meta, state=state)


def restore_model(ckpt: Checkpoint) -> tuple[Any, Any]:
    """Rebuild (config, model) from a checkpoint, weights and BatchNorm statistics included."""
    from dlcli.config import ConfigError, validate_config
    from dlcli.nn.from_config import build_model

    try:
        cfg = validate_config(ckpt.config)
    except ConfigError as e:
        raise CheckpointError(f"the checkpoint's config is not valid for this dlcli: {e}") from e
    model = build_model(cfg)
    try:
        model.set_weights(ckpt.weights)
    except ValueError as e:
        raise CheckpointError(f"the checkpoint's weights do not fit its model: {e}") from e
    return cfg, model
