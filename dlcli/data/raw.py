"""Arrays as read, before splitting: the parts of a dataset and where their rows come from."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dlcli.data.files import FileData
from dlcli.data.preprocess import check_finite, check_float32_range

CLASSIFICATION = "classification"
REGRESSION = "regression"


@dataclass
class Raw:
    """Arrays as read, before splitting and checks."""

    parts: dict[str, tuple[np.ndarray, np.ndarray] | None]  # "train", "validation", "test"
    class_names: list[str] | None
    task: str | None  # what the dataset itself is, when it says
    source: str
    files: dict[str, FileData | None] = field(default_factory=dict)  # the file of each part
    single: str | None = None  # one data file named in messages instead of "the train ..."

    def subject(self, split: str, what: str) -> str:
        """How messages name a part's labels or targets: "the test labels", "the labels in F"."""
        return f"the {what} in {self.single}" if self.single else f"the {split} {what}"

    def check_finite_inputs(self) -> Raw:
        """self, once its inputs are known to be finite (files check theirs as they are read,
        where rows can be named by their line)."""
        for split, part in self.parts.items():
            if part is not None:
                check_finite(part[0], split, source=self.source)
        return self

    def check_finite_labels(self, task: str) -> None:
        """NaN/inf labels or targets (and targets beyond float32), reported at their row in
        the file, before any split."""
        what = "targets" if task == REGRESSION else "labels"
        for split, part in self.parts.items():
            if part is None:
                continue
            f = self.files.get(split)
            name = "" if self.single else split
            source = str(f.path) if f is not None else self.source
            where = f.where if f is not None else None
            check_finite(part[1], name, what, source=source, where=where)
            if task == REGRESSION:  # class ids are checked as integers instead
                check_float32_range(part[1], name, what, source=source, where=where)
