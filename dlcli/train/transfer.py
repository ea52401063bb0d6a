"""Transfer learning: start a model from another run's weights, layer by layer, by name.

A layer is taken whole: every one of its weights must exist in the checkpoint under the same
"layer/weight" name with the same shape. What cannot be taken is reported layer by layer
(which layer, which weight, both shapes); with strict it is an error instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dlcli.core.backend import get_array_module
from dlcli.errors import CheckpointError


@dataclass
class TransferReport:
    """What init_from did."""

    loaded: list[str] = field(default_factory=list)  # layer names
    problems: list[str] = field(default_factory=list)  # one line per layer not taken

    def summary(self, source: str) -> str:
        head = f"initialized {len(self.loaded)} layer(s) from {source}"
        return head + (f": {', '.join(self.loaded)}" if self.loaded else "")


def _problem(layer: Any, weights: dict[str, np.ndarray]) -> str | None:
    """Why this layer cannot be taken from `weights`, or None when it can."""
    if not layer.params:
        return None
    missing, wrong = [], []
    for key, w in layer.params.items():
        name = f"{layer.name}/{key}"
        if name not in weights:
            missing.append(key)
        elif tuple(np.shape(weights[name])) != tuple(w.shape):
            wrong.append(f"{key} {tuple(np.shape(weights[name]))} in the checkpoint, "
                         f"{tuple(w.shape)} here")
    if len(missing) == len(layer.params):
        return f"{layer.name}: not in the checkpoint"
    parts = ([f"missing {', '.join(missing)}"] if missing else []) + wrong
    return f"{layer.name}: " + "; ".join(parts) if parts else None


def init_from(model: Any, weights: dict[str, np.ndarray], layers: list[str] | None = None,
              strict: bool = False) -> TransferReport:
    """Copy weights into `model` for `layers` (default: every layer whose weights all match).

    Raises:
        CheckpointError: a named layer that the model does not have; with strict, any layer
            asked for (or, without a list, any layer with weights) that cannot be taken.
    """
    by_name = {layer.name: layer for layer in model.walk() if layer.params}
    if layers is not None:
        unknown = [n for n in layers if n not in by_name]
        if unknown:
            raise CheckpointError(
                f"init_from.layers names {', '.join(unknown)}, which this model does not have "
                f"(its layers: {', '.join(by_name)})")
    chosen = [by_name[n] for n in layers] if layers is not None else list(by_name.values())
    report = TransferReport()
    for layer in chosen:
        if not layer.params:
            continue
        problem = _problem(layer, weights)
        if problem is None:
            for key, w in layer.params.items():
                w.data[...] = get_array_module(w.data).asarray(
                    weights[f"{layer.name}/{key}"], dtype=w.data.dtype)
            report.loaded.append(layer.name)
        else:
            report.problems.append(problem)
    if strict and report.problems:
        raise CheckpointError("init_from (strict): these layers cannot be taken from the "
                              "checkpoint: " + " | ".join(report.problems))
    return report

