"""Predictions as tables, top-k lists and files (.csv, .json, .npy)."""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlcli.errors import DlcliError
from dlcli.predict.runner import ModelInfo

OUTPUT_SUFFIXES = (".csv", ".json", ".npy")


@dataclass
class Predictions:
    """Model outputs for named inputs."""

    names: list[str]
    outputs: np.ndarray  # (N, *output_shape) as the model gives them
    info: ModelInfo

    @property
    def classification(self) -> bool:
        return self.info.task == "classification" and self.outputs.ndim == 2

    def scores(self) -> np.ndarray:
        """(N, classes): per-class probabilities; a single sigmoid unit becomes [1 - p, p]."""
        out = self.outputs
        if out.shape[1] == 1 and self.info.output_activation == "sigmoid":
            return np.concatenate([1.0 - out, out], axis=1)
        return out

    def class_names(self) -> list[str]:
        n = self.scores().shape[1]
        names = self.info.class_names
        return list(names) if names and len(names) == n else [str(i) for i in range(n)]

    def top_k(self, k: int) -> list[list[tuple[str, float]]]:
        """The k most probable classes of each input, with their probabilities."""
        scores, names = self.scores(), self.class_names()
        k = min(k, scores.shape[1])
        # stable sort on the negated scores: ties keep class order, as argmax does
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return [[(names[j], float(scores[i, j])) for j in row] for i, row in enumerate(order)]

    def records(self, k: int) -> list[dict[str, Any]]:
        """JSON-able rows: strict JSON, so non-finite numbers become null."""
        if not self.classification:
            flat = self.outputs.reshape(len(self.outputs), -1)
            return [{"input": n, "output": [_num(v) for v in row]}
                    for n, row in zip(self.names, flat, strict=True)]
        rows = []
        for name, top in zip(self.names, self.top_k(k), strict=True):
            rows.append({"input": name, "prediction": top[0][0], "probability": _num(top[0][1]),
                         "top_k": [{"class": c, "probability": _num(p)} for c, p in top]})
        return rows

    def write(self, path: str | os.PathLike[str], k: int) -> Path:
        """Write to .csv (every class's probability), .json (top-k) or .npy (raw outputs)."""
        p = Path(path)
        suffix = p.suffix.lower()
        if suffix not in OUTPUT_SUFFIXES:
            raise DlcliError(f"-o {p}: name the file .csv, .json or .npy")
        try:
            if suffix == ".npy":
                np.save(p, self.outputs)
            elif suffix == ".json":
                p.write_text(json.dumps(self.records(k), indent=2, allow_nan=False) + "\n")
            else:
                with open(p, "w", newline="", encoding="utf-8") as f:
                    w = csv.writer(f)
                    if self.classification:
                        classes = self.class_names()
                        w.writerow(["input", "prediction", "probability",
                                    *(f"p_{c}" for c in classes)])
                        for name, row, top in zip(self.names, self.scores(), self.top_k(1),
                                                  strict=True):
                            w.writerow([name, top[0][0], _cell(top[0][1]),
                                        *(_cell(v) for v in row)])
                    else:
                        flat = self.outputs.reshape(len(self.outputs), -1)
                        w.writerow(["input", *(f"output_{j}" for j in range(flat.shape[1]))])
                        for name, row in zip(self.names, flat, strict=True):
                            w.writerow([name, *(_cell(v) for v in row)])
        except OSError as e:
            raise DlcliError(f"cannot write {p}: {e.strerror or e}") from None
        return p


def _num(v: Any) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _cell(v: Any) -> str:
    return f"{float(v):.6g}"
