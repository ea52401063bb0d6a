"""Optional libraries: imported where used; a missing one is one line naming the extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from dlcli.errors import DlcliError


class MissingExtraError(DlcliError):
    """An optional library is not installed."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import `module`, or raise MissingExtraError naming the pip extra that installs it.

    Example:
        onnx = require("onnx", "export", "ONNX export")
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(
            f"{purpose} needs the '{module.split('.')[0]}' package, which is not installed: "
            f"pip install 'dlcli[{extra}]'"
        ) from None
