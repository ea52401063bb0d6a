"""IDX reading and writing: every dtype, gzip and raw, and corrupt files."""

import gzip
import struct

import numpy as np
import pytest

from dlcli.data.idx import IDX_DTYPES, is_idx, read_idx, write_idx
from dlcli.errors import DataError

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("shape", [(5,), (3, 4, 2), (1, 2, 3, 2)])
def test_round_trip(tmp_path, dtype, suffix, shape):
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if info is not None:
        a = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    else:
        a = (rng.standard_normal(shape) * 1e3).astype(dtype)
    path = tmp_path / f"a-idx{suffix}"
    write_idx(path, a)
    b = read_idx(path)
    assert b.dtype == np.dtype(dtype) and b.dtype.isnative
    assert b.shape == shape
    np.testing.assert_array_equal(a, b)
    b[...] = 0  # the result is an ordinary writable array


def test_gzip_told_by_content_not_name(tmp_path):
    a = np.arange(6, dtype=np.int16).reshape(2, 3)
    write_idx(tmp_path / "x.gz", a)
    (tmp_path / "x.gz").rename(tmp_path / "plain-name")
    np.testing.assert_array_equal(read_idx(tmp_path / "plain-name"), a)


def test_big_endian_layout(tmp_path):
    # Written by hand: type 0x0B (int16), 1 dim of 2, values 258 and -2 big-endian.
    raw = bytes([0, 0, 0x0B, 1]) + struct.pack(">I", 2) + struct.pack(">hh", 258, -2)
    (tmp_path / "h.idx").write_bytes(raw)
    np.testing.assert_array_equal(read_idx(tmp_path / "h.idx"), [258, -2])
    write_idx(tmp_path / "w.idx", np.array([258, -2], dtype=np.int16))
    assert (tmp_path / "w.idx").read_bytes() == raw
    assert is_idx(raw) and not is_idx(b"PK\x03\x04")
    assert set(IDX_DTYPES) == {0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E}


def _valid_bytes() -> bytes:
    return bytes([0, 0, 0x08, 2]) + struct.pack(">II", 3, 4) + bytes(range(12))


@pytest.mark.parametrize(
    "data, message",
    [
        (_valid_bytes()[:-1], "truncated IDX file"),
        (_valid_bytes()[:9], "truncated IDX header"),
        (b"\x00\x00", "truncated IDX file"),
        (_valid_bytes() + b"\x00\x00", "2 bytes after"),
        (b"\x01\x02" + _valid_bytes()[2:], "not an IDX file"),
        (bytes([0, 0, 0x0A, 1]) + struct.pack(">I", 1) + b"\x00", "unknown IDX type code 0x0A"),
    ],
)
@pytest.mark.parametrize("compress", [False, True])
def test_corrupt(tmp_path, data, message, compress):
    path = tmp_path / "bad-idx"
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(DataError, match=message) as e:
        read_idx(path)
    assert str(path) in str(e.value)


def test_corrupt_gzip(tmp_path):
    good = gzip.compress(_valid_bytes())
    (tmp_path / "cut.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="corrupt or truncated gzip"):
        read_idx(tmp_path / "cut.gz")
    (tmp_path / "garbage.gz").write_bytes(b"\x1f\x8b" + b"\xff" * 40)
    with pytest.raises(DataError, match="corrupt or truncated gzip"):
        read_idx(tmp_path / "garbage.gz")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_idx(tmp_path / "nope-idx3-ubyte.gz")


def test_write_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(ValueError, match="int64"):
        write_idx(tmp_path / "x.idx", np.zeros(3, dtype=np.int64))
