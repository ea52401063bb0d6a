"""Tests of the GPU path on cupy. Every test here is marked `gpu` (run them alone with
`pytest -m gpu`) and skipped, with the reason, where cupy or a CUDA device is missing."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent


def _missing() -> str | None:
    """Why the GPU tests cannot run here, or None."""
    if importlib.util.find_spec("cupy") is None:
        return "cupy is not installed (pip install 'dlcli[gpu]')"
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "cupy sees no CUDA device"
    except Exception as e:  # noqa: BLE001 - no driver, no device: any failure means no GPU
        return f"cupy cannot reach a CUDA device ({type(e).__name__}: {e})"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _missing()
    for item in items:
        if HERE not in Path(item.path).parents:
            continue
        item.add_marker(pytest.mark.gpu)
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=f"GPU test: {reason}"))


@pytest.fixture
def cp() -> Any:
    """The cupy module (the tests are skipped before this where there is none)."""
    import cupy

    return cupy

