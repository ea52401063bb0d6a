"""`prepare_data`: a data file read for a trained model (eval --data), with the model's
stored preprocessing and class names."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from dlcli.data.files import read_source
from dlcli.data.labels import encode_labels, one_text_column
from dlcli.data.preprocess import Preprocessor, model_inputs, normalize_inputs
from dlcli.data.raw import CLASSIFICATION, Raw
from dlcli.errors import DataError

if TYPE_CHECKING:  # only a type here: reading files does not import pydantic
    from dlcli.config.schema import FileSource


def prepare_data(
    source: str | os.PathLike[str] | FileSource,
    input_shape: Sequence[int],
    preprocessor: Preprocessor,
    task: str,
    class_names: list[str] | None = None,
    key: str = "--data",
    labels_key: str = "--labels",
) -> tuple[np.ndarray, np.ndarray]:
    """Read a data file for a trained model: its stored preprocessing and class names apply.

    Args:
        source: a path, or a FileSource with path and labels (for .npy/IDX features).
        key, labels_key: how messages name the file and its labels file (CLI options).
    Raises:
        DataError: unreadable file, wrong input shape, non-finite values, unknown labels, text
            labels for a model that has no class names.
    """
    f = read_source(source, key, labels_key=labels_key)
    x, y = f.x, f.y
    name = str(f.path)
    raw = Raw({"train": (x, y), "validation": None, "test": None}, class_names, None, name,
              {"train": f}, single=name)
    raw.check_finite_labels(task)
    if task == CLASSIFICATION and y.dtype.kind in "USO":
        if not class_names:
            # Mapping text by sort order could silently pair labels with the wrong outputs.
            raise DataError(
                f"{key}: the labels in {name} are text (e.g. {str(y.ravel()[0])!r}) but the "
                f"model has no class names (it was trained on numeric class ids); give the "
                f"labels as the class ids (0, 1, ...) it was trained with"
            )
        y = one_text_column(y, f"the labels in {name}")
        index = {c: i for i, c in enumerate(class_names)}
        unknown = sorted({str(v) for v in y} - set(index))
        if unknown:
            raise DataError(
                f"{key}: the labels in {name} include {unknown[:5]}, which are not classes of "
                f"this model ({class_names})"
            )
        y = np.array([index[str(v)] for v in y], dtype=np.int64)
    else:
        encode_labels(raw, task)
        x, y = raw.parts["train"]
    x = model_inputs(x, tuple(int(d) for d in input_shape), name)
    return normalize_inputs(preprocessor, x, name), y
