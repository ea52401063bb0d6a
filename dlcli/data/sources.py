"""Reading the configured data source (a built-in, a synthetic set, or files) into a Raw.

The schema (`DataConfig`) has already checked exactly one of dataset and train, the split
fractions and their sum, and a validation file against validation_split; those are not checked
again here. The source checks the schema does not make live here, once: a test file with
test_split, files with a named dataset, synthetic-only settings or a test split for a built-in.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from dlcli.data.builtin import BUILTINS, load_builtin
from dlcli.data.download import ProgressFn
from dlcli.data.files import read_source
from dlcli.data.raw import CLASSIFICATION, Raw
from dlcli.data.synthetic import make_synthetic
from dlcli.errors import DataError

if TYPE_CHECKING:  # the schema (pydantic) is only a type here: reading files does not need it
    from dlcli.config.schema import DataConfig, FileSource


def read_configured(
    data: DataConfig,
    seed: int,
    data_dir: str | os.PathLike[str] | None = None,
    progress: ProgressFn | None = None,
) -> Raw:
    """The dataset `data` names, as read: its parts, class names, task and source.

    Args:
        data: the validated data section of the config.
        seed: seeds synthetic data.
        data_dir: searched first for built-in datasets.
        progress: progress(bytes_done, bytes_total_or_None) while a file downloads.
    Raises:
        DataError: settings that do not go with this source, or data that cannot be read.
    """
    if data.test is not None and data.test_split > 0:
        raise DataError("data: set data.test (a file) or data.test_split, not both")
    if data.train is not None:
        # read_source checks the inputs (numbers, finite) with the file's own row numbers.
        files = {"train": read_source(data.train, "data.train")}
        for key, source in (("validation", data.validation), ("test", data.test)):
            files[key] = None if source is None else read_source(source, f"data.{key}")
        parts = {k: None if f is None else (f.x, f.y) for k, f in files.items()}
        return Raw(parts, None, None, _describe(data.train), files)

    name = str(data.dataset)
    for key, value in (("validation", data.validation), ("test", data.test)):
        if value is not None:
            raise DataError(f"data.{key}: files go with data.train, not with data.dataset")
    if name in BUILTINS:
        for key, value in (("n_classes", data.n_classes), ("n_features", data.n_features)):
            if value is not None:
                raise DataError(f"data.{key} applies to synthetic datasets, not to {name}")
        if data.test_split > 0:
            raise DataError(f"data.test_split: {name} has an official test split; leave it at 0")
        b = load_builtin(name, data_dir=data_dir, progress=progress)
        parts = {"train": (b.x_train, b.y_train), "validation": None, "test": (b.x_test, b.y_test)}
        raw = Raw(parts, b.class_names, CLASSIFICATION, f"{name} ({b.source})")
        return raw.check_finite_inputs()
    # Any other name the schema accepts is synthetic; make_synthetic refuses one it does not know.
    s = make_synthetic(
        name,
        n_samples=data.n_samples,
        noise=data.noise,
        seed=seed,
        n_classes=data.n_classes,
        n_features=data.n_features,
    )
    parts = {"train": (s.x, s.y), "validation": None, "test": None}
    raw = Raw(parts, s.class_names, s.task, f"{name} (synthetic, {data.n_samples} samples)")
    return raw.check_finite_inputs()


def _describe(source: str | FileSource) -> str:
    return source if isinstance(source, str) else source.path
