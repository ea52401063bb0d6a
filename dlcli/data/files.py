"""Datasets from files: .npz, .npy pairs, CSV/TSV and IDX pairs.

A source is a path string or the config's FileSource (path, labels, x_key, y_key, target,
header). Errors name the config key (e.g. data.train.labels) and the path.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
import tokenize
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from dlcli.data.idx import is_idx, read_bytes, read_idx
from dlcli.data.preprocess import check_finite, check_float32_range
from dlcli.errors import DataError

if TYPE_CHECKING:
    from dlcli.config.schema import FileSource


def file_spec(source: str | os.PathLike[str] | FileSource) -> FileSource:
    """The FileSource of a source: a plain path gets the default options."""
    if isinstance(source, str | os.PathLike):
        # Imported here: only a plain path needs the model built, and predict's readers that
        # import this module should not pull in pydantic and the schema.
        from dlcli.config.schema import FileSource

        return FileSource(path=os.fspath(source))
    return source


def file_kind(path: Path) -> str:
    """'npz', 'npy', 'csv' or 'idx' from the name, else by sniffing for an IDX header."""
    name = path.name.lower().removesuffix(".gz")
    for ext, kind in ((".npz", "npz"), (".npy", "npy"), (".csv", "csv"), (".tsv", "csv")):
        if name.endswith(ext):
            return kind
    try:
        with open(path, "rb") as f:
            head = f.read(64)
        if head[:2] == b"\x1f\x8b":
            with gzip.open(path, "rb") as f:
                head = f.read(4)
    except (OSError, EOFError):
        head = b""
    return "idx" if is_idx(head) else "unknown"


@dataclass
class FileData:
    """One file source as read: features, labels, and where each sample sits in the file."""

    x: np.ndarray
    y: np.ndarray
    path: Path
    lines: np.ndarray | None = None  # CSV: the file line of each sample; None: sample i is row i

    def where(self, i: int) -> str:
        """Where sample i is in the file, for messages: a CSV line or an array index."""
        return f"line {int(self.lines[i])}" if self.lines is not None else f"index {i}"


def load_source(
    source: str | os.PathLike[str] | FileSource, key: str
) -> tuple[np.ndarray, np.ndarray]:
    """Read features and labels/targets of one split.

    Args:
        source: a path, or a FileSource (the config's file source with its options).
        key: the config key, for messages (e.g. "data.train").
    Returns:
        x (N, ...) in the file's dtype, y (N,) or (N, k): numbers, or strings for CSV labels.
    Raises:
        DataError: missing or unreadable file, missing labels, unknown format, N mismatch,
            no samples, features that are not numbers or not finite.
    """
    data = read_source(source, key)
    return data.x, data.y


def read_source(
    source: str | os.PathLike[str] | FileSource, key: str, *, labels_key: str | None = None
) -> FileData:
    """Read one split like `load_source`, keeping the file's row of each sample for messages.

    Args:
        source: a path, or a FileSource (the config's file source with its options).
        key: names the source in messages: a config key ("data.train") or a CLI option
            ("--data"). For "data.<split>" keys, messages about values name the split.
        labels_key: the CLI option that gives the labels (e.g. "--labels"); None for a config
            source, whose labels are `<key>.labels`.
    Raises:
        DataError: as load_source.
    """
    spec = file_spec(source)
    path = Path(spec.path).expanduser()
    cli = labels_key is not None
    path_key = key if cli or isinstance(source, str | os.PathLike) else f"{key}.path"
    labels_key = labels_key or f"{key}.labels"
    if not path.is_file():
        raise DataError(f"{path_key}: file not found: {path}")
    kind = file_kind(path)
    if spec.labels is not None and kind in ("npz", "csv"):
        raise DataError(
            f"{labels_key}: a {kind} file holds its own labels; labels applies to .npy and IDX"
        )
    lines = None
    if kind == "npz":
        x, y = _read_npz(path, spec, key, cli)
    elif kind == "csv":
        x, y, _, lines = _read_table(path, spec.target, spec.header, path_key)
    elif kind in ("npy", "idx"):
        if spec.labels is None and cli:
            raise DataError(
                f"{path_key}: {path.name} holds features only; pass its labels file (.npy or "
                f"IDX) with {labels_key} FILE"
            )
        if spec.labels is None:
            raise DataError(
                f"{labels_key}: {path.name} holds features only; set {labels_key} to its "
                f"labels file (.npy or IDX)"
            )
        labels = Path(spec.labels).expanduser()
        if not labels.is_file():
            raise DataError(f"{labels_key}: file not found: {labels}")
        x = _read_array(path, kind, path_key)
        y = _read_array(labels, file_kind(labels), labels_key)
    else:
        raise DataError(
            f"{path_key}: cannot tell the format of {path}: expected .npz, .npy (with labels), "
            f".csv/.tsv, or an IDX file (with labels)"
        )
    if len(x) != len(y):
        raise DataError(f"{key}: {len(x)} samples but {len(y)} labels in {path}")
    if len(x) == 0:
        raise DataError(f"{path_key}: {path} holds no samples (shape {list(x.shape)})")
    data = FileData(x, y, path, lines)
    split = key.removeprefix("data.") if key.startswith("data.") else ""
    _check_inputs(x, split, source=str(path), where=data.where)
    return data


def _check_inputs(
    x: np.ndarray, split: str, *, source: str, where: Callable[[int], str] | None = None
) -> None:
    """DataError unless the inputs are numbers, finite, and within float32's range.

    Done when data is read, before any split, so `where` can name the file's own rows.
    """
    subject = " ".join(w for w in ("the", split, "inputs") if w)
    if x.dtype.kind not in "biuf":
        raise DataError(f"{subject} in {source} are not numbers (dtype {x.dtype})")
    check_finite(x, split, source=source, where=where)
    check_float32_range(x, split, source=source, where=where)


def _read_array(path: Path, kind: str, key: str) -> np.ndarray:
    if kind == "idx":
        try:
            return read_idx(path)
        except DataError as e:
            raise DataError(f"{key}: {e}") from None
    if kind != "npy":
        raise DataError(f"{key}: {path} is neither a .npy nor an IDX file")
    try:
        with open(path, "rb") as f:
            _check_npy(f, path.stat().st_size, f"{key}: cannot read {path}")
        a = np.load(path, allow_pickle=False)
    except _NUMPY_READ_ERRORS as e:
        # allow_pickle=False: an object array (which needs pickle) is refused with ValueError.
        raise DataError(f"{key}: cannot read {path}: {_one_line(e)}") from None
    if a.ndim == 0:
        raise DataError(f"{key}: {path} holds a scalar, expected one row per sample")
    return a


def _read_npz(path: Path, spec: FileSource, key: str, cli: bool) -> tuple[np.ndarray, np.ndarray]:
    try:
        with zipfile.ZipFile(path) as zf:
            members = {i.filename.removesuffix(".npy"): i for i in zf.infolist()}
            # an empty key has always meant the default one
            x_key, y_key = spec.x_key or "x", spec.y_key or "y"
            for field, name in (("x_key", x_key), ("y_key", y_key)):
                if name not in members:
                    where = key if cli else f"{key}.{field}"
                    raise DataError(
                        f"{where}: {path} has no array {name!r}; it has {sorted(members)}"
                    )
                with zf.open(members[name]) as f:
                    _check_npy(f, members[name].file_size, f"{key}: cannot read {path} ({name})")
        with np.load(path, allow_pickle=False) as z:
            x, y = z[x_key], z[y_key]
    except (*_NUMPY_READ_ERRORS, zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError) as e:
        # RuntimeError: zipfile's "encrypted" and (NotImplementedError) "unsupported version"
        raise DataError(f"{key}: cannot read {path}: {_one_line(e)}") from None
    if x.ndim == 0 or y.ndim == 0:
        raise DataError(f"{key}: {path}: x and y must have one row per sample, got scalars")
    return x, y


# What numpy, zipfile and zlib raise on a damaged .npy/.npz: a cut-off stream is EOFError, a bad
# deflate stream zlib.error, a garbled header ValueError, or SyntaxError or TokenError from the
# parsers numpy reads the header's dict with.
_NUMPY_READ_ERRORS = (
    OSError, ValueError, EOFError, zlib.error, SyntaxError, tokenize.TokenError, MemoryError
)


def _check_npy(f: IO[bytes], size: int, what: str) -> None:
    """Read a .npy header and refuse object arrays and data shorter than the header says.

    numpy allocates the whole array before reading, so a damaged header that claims a huge
    shape would otherwise try to allocate it.
    """
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        return  # newer versions: np.load checks them itself
    if dtype.hasobject:
        raise DataError(f"{what}: it holds Python objects (dtype {dtype}); dlcli reads numbers")
    need = math.prod(shape) * dtype.itemsize
    have = size - f.tell()
    if need > have:
        raise DataError(
            f"{what}: truncated: the header says shape {list(shape)} of {dtype} ({need} bytes) "
            f"but the file holds {have} bytes of data"
        )


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _number(s: str) -> float | None:
    try:
        return float(s)
    except ValueError:
        return None


def read_csv(
    path: str | os.PathLike[str],
    *,
    target: str | int | None = -1,
    header: bool | None = None,
    key: str = "data.train",
) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """Read a CSV (or .tsv) table: numeric features plus one target column.

    Args:
        path: the file (.csv, .tsv, optionally .gz).
        target: the target column, by header name or index (negative counts from the end);
            None for a table of features only (y is then empty).
        header: whether the first row holds column names; None detects it: a header when a
            target name is given or any feature cell of the first row is not a number.
    Returns:
        x float64 (N, F); y int64 when all targets are integers, float64 when numbers,
        else str (class names); the column names (None without a header).
    """
    x, y, columns, _ = _read_table(Path(path), target, header, key)
    return x, y, columns


def _read_table(
    p: Path, target: str | int | None, header: bool | None, key: str
) -> tuple[np.ndarray, np.ndarray, list[str] | None, np.ndarray]:
    """read_csv's work; also returns the file line each sample starts on."""
    delimiter = "\t" if p.name.lower().removesuffix(".gz").endswith(".tsv") else ","
    try:
        text = read_bytes(p).decode("utf-8-sig")  # -sig: drop the BOM Excel writes
    except UnicodeDecodeError as e:
        raise DataError(f"{key}: {p} is not UTF-8 text ({e})") from None
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    rows: list[tuple[int, list[str]]] = []
    start = 1  # the line a record starts on: a quoted field may span several lines
    try:
        for r in reader:
            if r and any(c.strip() for c in r):
                rows.append((start, r))
            start = reader.line_num + 1
    except csv.Error as e:
        problem = str(e)
        if "field limit" in problem:
            problem = (
                f"a field is longer than {csv.field_size_limit():,} characters; "
                f"is this a CSV file?"
            )
        raise DataError(f"{key}: {p} line {reader.line_num}: {problem}") from None
    if not rows:
        raise DataError(f"{key}: {p} is empty")
    width = len(rows[0][1])
    if width < (1 if target is None else 2):
        raise DataError(f"{key}: {p} has {width} column; need features and a target column")

    first = [c.strip() for c in rows[0][1]]
    if isinstance(target, str):
        if header is False:
            raise DataError(
                f"{key}.target: column name {target!r} needs a header row (header: true)"
            )
        header = True
    if header is None:
        t = target  # an int or None here: a target name sets header above
        t = t % width if t is not None and -width <= t < width else t
        header = any(_number(c) is None for j, c in enumerate(first) if j != t)
    columns = first if header else None
    body = rows[1:] if header else rows
    if not body:
        raise DataError(f"{key}: {p} has a header but no data rows")

    if target is None:
        t = None
    elif isinstance(target, str):
        if target not in first:
            raise DataError(f"{key}.target: no column {target!r} in {p}; columns: {first}")
        t = first.index(target)
    else:
        if not -width <= target < width:
            raise DataError(f"{key}.target: column {target} is out of range for {width} columns")
        t = target % width

    feats = [j for j in range(width) if j != t]
    x = np.empty((len(body), len(feats)), dtype=np.float64)
    y_raw = []
    for n, (line, row) in enumerate(body):
        if len(row) != width:
            raise DataError(f"{key}: {p} line {line} has {len(row)} fields, expected {width}")
        for m, j in enumerate(feats):
            v = _number(row[j])
            if v is None:
                col = repr(columns[j]) if columns else str(j)
                raise DataError(f"{key}: {p} line {line}, column {col}: {row[j]!r} is not a number")
            x[n, m] = v
        if t is not None:
            y_raw.append(row[t].strip())
    lines = np.array([line for line, _ in body], dtype=np.int64)
    return x, _parse_targets(y_raw), columns, lines


def _parse_targets(values: list[str]) -> np.ndarray:
    """int64 when every value is an integer, float64 when every value is a number, else str."""
    nums = [_number(v) for v in values]
    if any(v is None for v in nums):
        return np.array(values, dtype=str)
    y = np.array(nums, dtype=np.float64)
    if (
        np.all(np.isfinite(y))
        and np.all(y == np.round(y))
        and np.all(np.abs(y) < 2.0**53)  # beyond, float64 holds no exact integer (nor int64)
        and all("." not in v and "e" not in v.lower() for v in values)
    ):
        return y.astype(np.int64)
    return y
