"""Inputs for `dlcli predict`: .npy/.npz arrays, CSV tables, PNG/JPEG images or folders of them.

Everything comes back raw (as the files store it) in the model's input shape; the model's own
preprocessing is applied later. Errors name the file and what was expected.
"""

from __future__ import annotations

import csv
import io
import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlcli.data.files import read_csv
from dlcli.data.idx import read_bytes
from dlcli.data.preprocess import check_finite, check_float32_range
from dlcli.errors import DataError
from dlcli.extras import require

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
_TABLE_SUFFIXES = (".csv", ".tsv", ".csv.gz", ".tsv.gz")
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}  # Pillow's mode for a model's channel count


@dataclass
class Inputs:
    """Raw inputs (N, *input_shape) and a name for each row (file, file[i] or file:line)."""

    x: np.ndarray
    names: list[str]


def read_inputs(
    paths: list[str], input_shape: tuple[int, ...], *, resize: bool = False,
    target: str | int | None = None,
) -> Inputs:
    """Read every path (files or folders of images) into one raw array.

    Args:
        input_shape: the model's input shape, batch axis excluded.
        resize: resize images to the model's height and width instead of refusing them.
        target: a CSV's target column (name or index) when the table still has it; the
            training config's `data.train.target`, default the last column.
    Raises:
        DataError: a missing, unreadable or empty input, or one that cannot take the model's
            shape; the message names the file.
    """
    shape = tuple(int(d) for d in input_shape)
    xs: list[np.ndarray] = []
    names: list[str] = []
    images: list[Path] = []

    def flush_images() -> None:
        if images:
            xs.append(np.stack([_read_image(p, shape, resize) for p in images]))
            names.extend(str(p) for p in images)
            images.clear()

    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            found = image_files(p)
            if not found:
                raise DataError(f"{p}: the folder holds no images "
                                f"({', '.join(IMAGE_SUFFIXES)})")
            images.extend(found)
            continue
        if not p.is_file():
            raise DataError(f"{p}: file not found")
        name = p.name.lower()
        if name.endswith(IMAGE_SUFFIXES):
            images.append(p)
            continue
        flush_images()
        if name.endswith(".npy") or name.endswith(".npz"):
            x = _fit(_read_array(p), shape, p)
            xs.append(x)
            names.extend(f"{p}[{i}]" for i in range(len(x)))
        elif name.endswith(_TABLE_SUFFIXES):
            x = _read_table(p, shape, target)
            xs.append(x)
            names.extend(f"{p}[{i}]" for i in range(len(x)))
        else:
            raise DataError(f"{p}: cannot tell what this is; give .npy, .npz, .csv, .tsv or "
                            f"images ({', '.join(IMAGE_SUFFIXES)}) or a folder of images")
    flush_images()
    x = xs[0] if len(xs) == 1 else np.concatenate([a.astype(np.float32) for a in xs])
    return Inputs(x, names)


def _read_array(p: Path) -> np.ndarray:
    try:
        if p.name.lower().endswith(".npy"):
            a = np.load(p, allow_pickle=False)
        else:
            with np.load(p, allow_pickle=False) as z:
                keys = list(z.files)
                key = "x" if "x" in keys else keys[0] if len(keys) == 1 else None
                if key is None:
                    raise DataError(f"{p}: holds {keys}; expected an array named 'x' (or one "
                                    "array only)")
                a = z[key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{p}: cannot read it as a numpy array ({e})") from None
    if a.dtype.kind not in "biuf":
        raise DataError(f"{p}: the values are not numbers (dtype {a.dtype})")
    return a


def _fit(a: np.ndarray, shape: tuple[int, ...], p: Path) -> np.ndarray:
    """(N, *shape) from (N, *shape), one sample of `shape`, or either without a channel of 1."""
    if a.shape == shape or a.shape + (1,) == shape:
        a = a[np.newaxis]  # one sample
    if a.shape[1:] + (1,) == shape:
        a = a[..., np.newaxis]
    if a.shape[1:] != shape:
        raise DataError(f"{p}: samples of shape {list(a.shape[1:])} but the model takes "
                        f"{list(shape)} (array shape {list(a.shape)})")
    if len(a) == 0:
        raise DataError(f"{p}: holds no samples")
    _check_values(a, p)
    return a


def _check_values(a: np.ndarray, p: Path) -> None:
    """Finite and within float32 (what the model computes in), naming the file's row."""
    for check in (check_finite, check_float32_range):
        check(a, "", source=str(p), where=lambda i: f"index {i}")


def _read_table(p: Path, shape: tuple[int, ...], target: str | int | None) -> np.ndarray:
    """Features of a CSV: every column, or all but the target column when there is one more."""
    n_features = math.prod(shape)
    delimiter = "\t" if p.name.lower().removesuffix(".gz").endswith(".tsv") else ","
    try:
        text = read_bytes(p).decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{p}: is not UTF-8 text ({e})") from None
    try:
        first = next((r for r in csv.reader(io.StringIO(text), delimiter=delimiter)
                      if r and any(c.strip() for c in r)), None)
    except csv.Error as e:  # e.g. a field over the csv module's size limit
        raise DataError(f"{p}: is not a readable CSV table ({e})") from None
    if first is None:
        raise DataError(f"{p}: is empty")
    width = len(first)
    if width == n_features:
        use: str | int | None = None
    elif width == n_features + 1:
        use = -1 if target is None else target
    else:
        raise DataError(f"{p}: has {width} columns but the model takes {n_features} features "
                        f"(or {n_features + 1} columns with the target)")
    x, _, _ = read_csv(p, target=use, key=str(p))
    _check_values(x, p)
    return x.reshape(len(x), *shape)


def _read_image(p: Path, shape: tuple[int, ...], resize: bool) -> np.ndarray:
    Image = require("PIL.Image", "images", "reading images")
    if len(shape) != 3 or shape[-1] not in _MODES:
        raise DataError(f"{p}: the model takes inputs of shape {list(shape)}, not images "
                        "(height, width and 1, 3 or 4 channels)")
    h, w, c = shape
    try:
        with Image.open(p) as img:
            img.load()
            converted = img.convert(_MODES[c])  # grey <-> RGB as Pillow converts them
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{p}: cannot read the image ({e})") from None
    if converted.size != (w, h):
        if not resize:
            raise DataError(f"{p}: the image is {converted.size[0]}x{converted.size[1]} but the "
                            f"model takes {w}x{h}; pass --resize to resize it")
        converted = converted.resize((w, h), Image.Resampling.BILINEAR)
    return np.asarray(converted, dtype=np.uint8).reshape(h, w, c)


def image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The images of a folder, sorted by name."""
    return sorted(q for q in Path(folder).iterdir()
                  if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
