"""IDX files (the MNIST format): a 4-byte magic, big-endian uint32 dims, big-endian data.

Magic: two zero bytes, a type code, the number of dimensions. Files may be gzip-compressed;
compression is told from the gzip magic bytes, not from the file name.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from dlcli.errors import DataError

# IDX type code -> big-endian numpy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_FOR_KIND = {(dt.kind, dt.itemsize): code for code, dt in IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """The file's content, gunzipped when it starts with the gzip magic bytes."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"file not found: {p}")
    try:
        with open(p, "rb") as f:
            head = f.read(2)
        if head == _GZIP_MAGIC:
            with gzip.open(p, "rb") as f:
                return f.read()
        return p.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        # BadGzipFile is an OSError; a cut-off gzip stream raises EOFError.
        raise DataError(f"cannot read {p}: corrupt or truncated gzip data ({e})") from None


def is_idx(head: bytes) -> bool:
    """True when the first bytes (already gunzipped) look like an IDX header."""
    return len(head) >= 4 and head[0] == 0 and head[1] == 0 and head[2] in IDX_DTYPES


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (gzip or raw) into a native-endian numpy array.

    Args:
        path: the file, e.g. ``train-images-idx3-ubyte.gz``.
    Returns:
        An array of the file's dims and dtype (uint8, int8, int16, int32, float32 or float64).
    Raises:
        DataError: missing, truncated or corrupt file, naming the path and what is wrong.
    """
    raw = read_bytes(path)
    if len(raw) < 4:
        raise DataError(f"{path}: truncated IDX file ({len(raw)} bytes, no complete header)")
    if raw[0] != 0 or raw[1] != 0:
        raise DataError(
            f"{path}: not an IDX file (magic bytes {raw[:4].hex()}, "
            f"expected 0000 then type and ndim)"
        )
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DataError(f"{path}: unknown IDX type code 0x{code:02X} (known: {known})")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DataError(f"{path}: truncated IDX header ({ndim} dims need {header_len} bytes)")
    dims = struct.unpack(f">{ndim}I", raw[4:header_len])
    dtype = IDX_DTYPES[code]
    count = math.prod(dims)
    expected = header_len + count * dtype.itemsize
    if len(raw) < expected:
        raise DataError(
            f"{path}: truncated IDX file: the header says shape {dims} of {dtype.name} "
            f"({expected} bytes) but the data has {len(raw)} bytes"
        )
    if len(raw) > expected:
        raise DataError(
            f"{path}: corrupt IDX file: {len(raw) - expected} bytes after the {dims} "
            f"{dtype.name} data the header describes"
        )
    arr = np.frombuffer(raw, dtype=dtype, count=count, offset=header_len).reshape(dims)
    # astype copies, so the result is writable and no longer tied to `raw`.
    return arr.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write `array` as an IDX file; gzip-compressed when the path ends in .gz.

    Raises:
        ValueError: a dtype IDX cannot store (only uint8, int8, int16, int32, float32, float64).
    """
    a = np.asarray(array)
    code = _CODE_FOR_KIND.get((a.dtype.kind, a.dtype.itemsize))
    if code is None:
        raise ValueError(f"IDX cannot store dtype {a.dtype}")
    if a.ndim > 255:
        raise ValueError(f"IDX stores at most 255 dims, got {a.ndim}")
    header = bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    data = header + np.ascontiguousarray(a, dtype=IDX_DTYPES[code]).tobytes()
    p = Path(path)
    if p.name.endswith(".gz"):
        with gzip.open(p, "wb") as f:
            f.write(data)
    else:
        p.write_bytes(data)
