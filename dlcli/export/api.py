"""`export_checkpoint`: a checkpoint to ONNX (verified), safetensors or npz, written atomically."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlcli import __version__
from dlcli.errors import DlcliError
from dlcli.export.verify import Verification, compare, verification_inputs

FORMATS = ("onnx", "safetensors", "npz")
_SUFFIXES = {".onnx": "onnx", ".safetensors": "safetensors", ".npz": "npz"}


class VerificationError(DlcliError):
    """The exported model does not compute what dlcli computes (exit 1: the export failed)."""

    exit_code = 1


@dataclass
class ExportReport:
    """What was written and how it was checked."""

    path: Path
    format: str
    bytes: int
    parameters: int
    verification: Verification | None = None


def format_for(path: str | os.PathLike[str], fmt: str | None) -> str:
    """The format asked for, else the one the file's suffix names."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise DlcliError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise DlcliError(
            f"cannot tell the format from {Path(path).name!r}: name it .onnx, .safetensors or "
            f".npz, or pass --format"
        )
    return _SUFFIXES[suffix]


def _metadata(model_info: Any, checkpoint: str) -> dict[str, Any]:
    info = model_info
    prep = info.preprocessing
    mode = prep.get("mode", "none")
    how = {"none": "no preprocessing",
           "scale": "scaled inside the model: (x - offset) / scale",
           "standardize": "standardized inside the model: (x - mean) / std"}[mode]
    return {
        "dlcli_version": __version__,
        "source_checkpoint": checkpoint,
        "task": info.task,
        "output_activation": info.output_activation or "",
        "class_names": info.class_names,
        "input": (f"float32 (batch, {', '.join(map(str, info.input_shape))}), channels last, raw "
                  f"values as the dataset stores them ({how})"),
        "preprocessing": prep,
        "config": info.config,
    }


def export_checkpoint(
    checkpoint: str | os.PathLike[str],
    output: str | os.PathLike[str],
    fmt: str | None = None,
    *,
    verify: bool = True,
    data_dir: str | None = None,
    verify_samples: int = 512,
    device: str = "cpu",
) -> ExportReport:
    """Export the model of `checkpoint` to `output`.

    ONNX files are verified by default: onnxruntime and dlcli run the same raw inputs (from the
    checkpoint's data when it loads, else random ones in the data's range) and a max abs
    difference above 1e-4 on probabilities raises VerificationError; the new file is not left
    behind and an older file at `output` stays as it was.

    Raises:
        DlcliError: a bad checkpoint, an unknown format, a layer without a conversion, a file
            that cannot be written, a missing extra; VerificationError (exit 1).
    """
    from dlcli.core.backend import xp_for
    from dlcli.predict.runner import CheckpointModel

    fmt = format_for(output, fmt)
    out = Path(output)
    if out.is_dir():
        raise DlcliError(f"{out} is a folder; give a file name, e.g. {out / ('model.' + fmt)}")
    xp = xp_for(device)  # no GPU for --device gpu: one error before anything is read
    source = CheckpointModel(checkpoint)  # loads, validates and rebuilds the model (CPU)
    model, info = source.model, source.info
    meta = _metadata(info, str(info.source))
    weights = model.get_weights()
    report = ExportReport(out, fmt, 0, model.count_params())

    def write(tmp: Path) -> None:
        if fmt == "onnx":
            from dlcli.export.onnx import build_onnx

            proto = build_onnx(model, info.preprocessing, final_activation=source.after,
                               output_name="probabilities" if info.probabilities else "output",
                               metadata=meta)
            tmp.write_bytes(proto.SerializeToString())
            if verify:
                model.to(xp)  # dlcli's side of the comparison runs on `device`
                report.verification = verify_onnx(tmp, source, data_dir, verify_samples)
        elif fmt == "safetensors":
            from dlcli.export.weights import write_safetensors

            write_safetensors(tmp, weights, meta)
        else:
            from dlcli.export.weights import write_npz

            write_npz(tmp, weights, meta)

    _atomic(out, write)
    report.bytes = out.stat().st_size
    return report


def verify_onnx(path: Path, source: Any, data_dir: str | None = None, n: int = 512) -> Verification:
    """Run `path` in onnxruntime and `source` (a CheckpointModel) in dlcli on the same raw
    inputs; VerificationError when they differ by more than the tolerance."""
    from dlcli.predict.runner import OnnxModel

    x, described = verification_inputs(source.cfg, source.info.preprocessing, n, data_dir)
    reference = source.predict(x)
    exported = OnnxModel(path).predict(x)
    result = compare(reference, exported, source.info.probabilities, len(x), described)
    if not result.passed:
        raise VerificationError(
            f"verification failed, the exported model does not compute what dlcli computes: "
            f"{result.describe()}; the file was not written (--no-verify skips the check)"
        )
    return result


def _atomic(out: Path, write: Any) -> None:
    """write(tmp) into a temporary file next to `out`, then rename it over `out`."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    except OSError as e:
        raise DlcliError(f"cannot write {out}: {e.strerror or e}") from None
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; an export is an ordinary file
        os.replace(tmp, out)
    except OSError as e:
        raise DlcliError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        tmp.unlink(missing_ok=True)

