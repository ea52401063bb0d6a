"""Export: a trained model leaves dlcli as ONNX (verified with onnxruntime), safetensors or npz.

`export_checkpoint` is the one entry point the CLI calls. The optional libraries (onnx,
onnxruntime, safetensors) are imported only inside the module that uses them.
"""

from __future__ import annotations

from dlcli.export.api import (
    FORMATS,
    ExportReport,
    VerificationError,
    export_checkpoint,
    format_for,
    verify_onnx,
)

__all__ = [
    "FORMATS", "ExportReport", "VerificationError", "export_checkpoint", "format_for",
    "verify_onnx",
]
