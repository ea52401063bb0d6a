"""Checkpoints: one self-contained npz file (arrays) with JSON metadata; no pickle anywhere.

Layout inside the npz: `weights/<layer>/<weight>` arrays, `optimizer/<slot>` arrays,
`state/<name>` arrays of the trainer (where an interrupted epoch stopped), and
`__meta__`, a uint8 array holding UTF-8 JSON (config, epoch, random states, preprocessing,
class names, format version). Files are written to a temporary name and renamed, so a crash
never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import io
import json
import math
import os
import reprlib
import stat
import struct
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlcli import __version__
from dlcli.errors import CheckpointError

FORMAT = "dlcli-checkpoint"
FORMAT_VERSION = 1
SUFFIX = ".npz"

MAX_BYTES = 4 * 2**30  # arrays a checkpoint may declare, all members together
MAX_META_BYTES = 64 * 2**20  # the metadata JSON (a long history is a few MiB)
MAX_MEMBERS = 65_535  # far above any model's weights and optimizer slots
MAX_DIRECTORY_BYTES = 16 * 2**20  # zipfile turns every directory entry into an object
_OVERHEAD = 64 * 2**20  # file bytes beyond the arrays: headers, directory, metadata
_DEFLATE_MAX_RATIO = 1100  # deflate expands at most ~1032:1; more means the directory lies
_NPY_HEADER_MAX = 10_000  # numpy's own limit for a safe .npy header
_NPY_PREFIX = 12  # magic, version and header length of an .npy file
_MAX_NDIM = 32
_NUMERIC = "biuf"
_PREFIXES = ("weights/", "optimizer/", "state/")
# what zipfile, zlib and struct raise for a damaged archive
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, struct.error, ValueError,
               OSError, EOFError, NotImplementedError, OverflowError)


@dataclass
class Checkpoint:
    """Everything needed to evaluate, resume or export a model."""

    config: dict[str, Any]
    weights: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)  # epoch, rng states, preprocessing, ...
    state: dict[str, np.ndarray] = field(default_factory=dict)  # trainer arrays (epoch position)

    @property
    def epoch(self) -> int:
        return int(self.meta.get("epoch", 0))


def resolve_path(path: str | os.PathLike[str]) -> Path:
    """Accept `checkpoints/best` for `checkpoints/best.npz`."""
    p = Path(path)
    if not p.exists() and p.suffix != SUFFIX and p.with_name(p.name + SUFFIX).exists():
        return p.with_name(p.name + SUFFIX)
    return p


def is_checkpoint(path: str | os.PathLike[str]) -> bool:
    """True for an existing file that starts like a zip (npz) archive, or one named *.npz."""
    p = resolve_path(path)
    if p.suffix == SUFFIX:
        return True
    try:
        if not stat.S_ISREG(os.stat(p).st_mode):
            return False  # a FIFO or device is never opened here: reading one may block
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def save_checkpoint(path: str | os.PathLike[str], ckpt: Checkpoint) -> Path:
    """Write atomically: a temporary file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    if path.suffix != SUFFIX:
        path = path.with_name(path.name + SUFFIX)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dlcli_version": __version__,
        "config": ckpt.config,
        **ckpt.meta,
    }
    arrays: dict[str, np.ndarray] = {"__meta__": np.frombuffer(json.dumps(meta).encode(), np.uint8)}
    arrays.update({f"weights/{k}": np.asarray(v) for k, v in ckpt.weights.items()})
    arrays.update({f"optimizer/{k}": np.asarray(v) for k, v in ckpt.optimizer.items()})
    arrays.update({f"state/{k}": np.asarray(v) for k, v in ckpt.state.items()})
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def clean_temporary_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files a killed save_checkpoint left in `folder`; return them."""
    removed = []
    for p in Path(folder).glob(f".*{SUFFIX}.*.tmp"):
        try:
            p.unlink()
            removed.append(p)
        except OSError:
            pass  # not ours to fight over; it stays
    return removed


def load_checkpoint(path: str | os.PathLike[str], max_bytes: int = MAX_BYTES) -> Checkpoint:
    """Read a checkpoint, refusing hostile or broken files before they cost memory or time.

    Only a regular file is opened; every array member's .npy header is read (not its data) and
    checked: numeric dtype (never pickle), declared size within `max_bytes` in all, and in
    agreement with the zip directory. Then the metadata is checked against its schema, and only
    then are the arrays read.

    Args:
        path: the checkpoint (`runs/<run>/checkpoints/best`, with or without .npz).
        max_bytes: the most array bytes the checkpoint may declare, all members together.

    Raises:
        CheckpointError: one line saying what is wrong (missing, a folder, not a regular file,
            too large, corrupt, metadata that breaks the schema).
    """
    p = resolve_path(path)
    try:
        st = os.stat(p)
    except (FileNotFoundError, NotADirectoryError):
        raise _error(f"no checkpoint at {path}: the file does not exist") from None
    except OSError as e:
        raise _error(f"cannot read the checkpoint {path}: {e.strerror or e}") from e
    if stat.S_ISDIR(st.st_mode):
        raise _error(_folder_hint(path, p))
    _check_file(p, st, max_bytes)
    try:
        # O_NONBLOCK: if the path became a FIFO since the stat, opening it must not wait
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as e:
        raise _error(f"cannot read the checkpoint {p}: {e.strerror or e}") from e
    with os.fdopen(fd, "rb") as f:
        _check_file(p, os.fstat(f.fileno()), max_bytes)
        try:
            magic = f.read(16)
        except OSError as e:  # e.g. /proc files that stat calls regular
            raise _error(f"cannot read the checkpoint {p}: {e.strerror or e}") from e
        if not magic.startswith(b"PK"):
            raise _error(f"{p} is not a dlcli checkpoint ({_what_is(p, magic)})")
        try:
            f.seek(0)
            return _read(p, f, max_bytes)
        except _ZIP_ERRORS as e:
            raise _error(
                f"{p} is not a readable dlcli checkpoint (corrupt or truncated: {e})"
            ) from e


def _what_is(p: Path, head: bytes) -> str:
    """What a file that is not an npz archive seems to be, from its name and first bytes."""
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        return "an ONNX model: give the checkpoint it was exported from"
    if suffix == ".safetensors":
        return ("a safetensors weights file, which predict and export read: here give the "
                "checkpoint it was exported from")
    # safetensors: an 8-byte little-endian header length, then the JSON header
    if len(head) > 8 and head[8:9] == b"{":
        return "it looks like a safetensors file; dlcli reads those when named *.safetensors"
    if suffix in (".yaml", ".yml"):
        return "a YAML file: a config is trained with dlcli train CONFIG"
    return "not an npz archive"


def _error(message: str) -> CheckpointError:
    """A CheckpointError of one line (file names and zip errors may hold newlines)."""
    return CheckpointError(" ".join(message.split("\n")).replace("\r", " "))


def checkpoint_in(folder: str | os.PathLike[str], *names: str) -> str | None:
    """The first of `names` (e.g. "checkpoints/last", "last") that is a checkpoint file in
    folder, without its suffix (as users write it), or None."""
    for name in names:
        if (Path(folder) / f"{name}{SUFFIX}").is_file():
            return name
    return None


def _folder_hint(given: str | os.PathLike[str], folder: Path) -> str:
    """What to give instead of a folder: a checkpoint that exists in it, if any."""
    candidate = checkpoint_in(folder, "checkpoints/best", "checkpoints/last", "best", "last")
    if candidate is not None:
        return f"{given} is a folder; give a checkpoint file, e.g. {Path(given) / candidate}"
    return (f"{given} is a folder with no checkpoint in it (no checkpoints/best{SUFFIX}, "
            f"best{SUFFIX} or last{SUFFIX}); give a checkpoint file, "
            f"e.g. runs/<run>/checkpoints/best")


def _check_file(p: Path, st: os.stat_result, max_bytes: int) -> None:
    """Only a regular file of a plausible size: never a device, FIFO or socket."""
    if not stat.S_ISREG(st.st_mode):
        raise _error(f"{p} is not a regular file (a device, FIFO or socket?); "
                     "give a checkpoint file")
    if st.st_size > max_bytes + _OVERHEAD:
        raise _error(f"{p} is {_size(st.st_size)}, more than a checkpoint may be "
                     f"({_size(max_bytes)} of arrays)")


@dataclass(frozen=True)
class _Member:
    """One array of the npz, as its .npy header declares it."""

    info: zipfile.ZipInfo
    dtype: np.dtype
    shape: tuple[int, ...]
    fortran: bool
    header: int  # bytes of .npy header before the data

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _read(p: Path, f: io.BufferedReader, max_bytes: int) -> Checkpoint:
    """Check the archive's directory and headers, then the metadata, then read the arrays."""
    end = zipfile._EndRecData(f)  # private but stable: the directory size, before parsing it
    if end is None:
        raise zipfile.BadZipFile("no end of central directory")
    entries, directory = end[zipfile._ECD_ENTRIES_TOTAL], end[zipfile._ECD_SIZE]
    if entries > MAX_MEMBERS or directory > MAX_DIRECTORY_BYTES:
        raise _error(f"{p} lists {entries:,} members in a {_size(directory)} directory, more "
                     f"than a checkpoint has (at most {MAX_MEMBERS:,})")
    f.seek(0)
    with zipfile.ZipFile(f) as z:
        members = _scan(p, z, max_bytes)
        if "__meta__" not in members:
            raise _error(f"{p} is an npz file but not a dlcli checkpoint (no metadata)")
        meta = _read_metadata(p, z, members.pop("__meta__"))
        arrays = {key: _read_array(p, z, m) for key, m in members.items()}
    weights = {k[len("weights/"):]: v for k, v in arrays.items() if k.startswith("weights/")}
    optimizer = {k[len("optimizer/"):]: v for k, v in arrays.items() if k.startswith("optimizer/")}
    state = {k[len("state/"):]: v for k, v in arrays.items() if k.startswith("state/")}
    _check_arrays(p, optimizer, state, meta)
    config = meta.pop("config")
    return Checkpoint(config=config, weights=weights, optimizer=optimizer, meta=meta, state=state)


def _scan(p: Path, z: zipfile.ZipFile, max_bytes: int) -> dict[str, _Member]:
    """Every member dlcli reads, with its declared array; nothing is decompressed but headers."""
    infos = z.infolist()
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        raise _error(f"{p} has members of the same name twice; it is not a checkpoint dlcli wrote")
    # overlapping members (one compressed stream listed many times) are the classic zip bomb
    spans = sorted((i.header_offset, i.header_offset + i.compress_size, i.filename) for i in infos)
    for (_, stop, name), (start, _, other) in zip(spans, spans[1:], strict=False):
        if start < stop:
            raise _error(f"{p}: members {name} and {other} overlap in the archive")
    members: dict[str, _Member] = {}
    total = 0
    for info in infos:
        key = info.filename.removesuffix(".npy")
        if key == info.filename or not (key == "__meta__" or key.startswith(_PREFIXES)):
            continue  # not ours (a newer dlcli's): never decompressed
        m = _member(p, z, info)
        total += m.nbytes
        if total > max_bytes:
            raise _error(f"{p}: member {info.filename} declares an array of shape {m.shape} "
                         f"({_size(m.nbytes)}); the checkpoint's arrays would exceed "
                         f"{_size(max_bytes)}")
        members[key] = m
    return members


def _member(p: Path, z: zipfile.ZipFile, info: zipfile.ZipInfo) -> _Member:
    """Read and check one member's .npy header (a few hundred bytes decompressed at most)."""
    where = f"{p}: member {info.filename}"
    if info.flag_bits & 0x1:
        raise _error(f"{where} is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise _error(f"{where} uses zip compression method {info.compress_type}; "
                     "checkpoints are stored or deflated")
    # from the directory alone, before inflating a byte
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size or \
            info.file_size > info.compress_size * _DEFLATE_MAX_RATIO + 1024:
        raise _error(f"{where} claims {_size(info.compress_size)} compressed for "
                     f"{_size(info.file_size)}, which no stored or deflated member can be")
    with z.open(info) as f:
        head = f.read(_NPY_PREFIX)
        try:
            buf = io.BytesIO(head)
            version = np.lib.format.read_magic(buf)
            size_bytes = 2 if version == (1, 0) else 4
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f".npy format version {version} (dlcli writes 1.0 or 2.0)")
            length = int.from_bytes(head[8:8 + size_bytes], "little")
            if length > _NPY_HEADER_MAX:
                raise ValueError(f"an .npy header of {length:,} bytes")
            head += f.read(max(0, 8 + size_bytes + length - len(head)))
            buf = io.BytesIO(head)
            np.lib.format.read_magic(buf)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(buf, max_header_size=_NPY_HEADER_MAX)
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError) as e:
            raise _error(f"{where} has no valid .npy header ({e})") from None
    header = buf.tell()
    if dtype.hasobject or dtype.kind not in _NUMERIC or dtype.fields is not None:
        # object arrays would need pickle: never, whatever the file says
        raise _error(f"{where} holds {dtype} data; checkpoints hold numbers only "
                     "(bool, int, uint, float)")
    if len(shape) > _MAX_NDIM or any(n < 0 for n in shape):
        raise _error(f"{where} declares an invalid shape {shape}")
    m = _Member(info, dtype, tuple(shape), bool(fortran), header)
    # the directory must agree with the header, or the decompressed size is a lie
    if info.file_size != header + m.nbytes:
        raise _error(f"{where} declares an array of shape {m.shape} ({_size(m.nbytes)}) but "
                     f"the archive lists {_size(info.file_size)} for it")
    return m


def _read_array(p: Path, z: zipfile.ZipFile, m: _Member) -> np.ndarray:
    """The member's data, read straight into its array (no second copy)."""
    try:
        flat = np.empty(math.prod(m.shape), m.dtype)
    except MemoryError:
        raise _error(f"{p}: not enough memory for member {m.info.filename} "
                     f"({_size(m.nbytes)})") from None
    with z.open(m.info) as f:
        f.read(m.header)
        view = memoryview(flat.view(np.uint8).reshape(-1))
        done = 0
        while done < m.nbytes:
            n = f.readinto(view[done:])
            if not n:
                raise _error(f"{p}: member {m.info.filename} is truncated")
            done += n
        f.read(1)  # reaching the end makes zipfile check the CRC
    if m.fortran:
        return flat.reshape(m.shape[::-1]).transpose()
    return flat.reshape(m.shape)


def _read_metadata(p: Path, z: zipfile.ZipFile, m: _Member) -> dict[str, Any]:
    """Decode and validate `__meta__` (format first, with the messages users know)."""
    from dlcli.io.checkpoint_meta import MetadataError, validate_metadata

    if m.dtype != np.uint8 or len(m.shape) != 1 or m.nbytes > MAX_META_BYTES:
        raise _error(f"{p} has corrupt metadata: __meta__ must be a 1-D uint8 array of at "
                     f"most {_size(MAX_META_BYTES)}, got {m.dtype} of shape {m.shape}")
    try:
        meta = json.loads(_read_array(p, z, m).tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as e:
        raise _error(f"{p} has corrupt metadata: {e}") from e
    if isinstance(meta, dict):
        if meta.get("format") != FORMAT:
            raise _error(f"{p} is not a dlcli checkpoint (format {_short(meta.get('format'))})")
        version = meta.get("format_version")
        if type(version) is int and version > FORMAT_VERSION:
            raise _error(
                f"{p} has checkpoint format version {version}; this dlcli ({__version__}) "
                f"reads up to {FORMAT_VERSION}: upgrade dlcli"
            )
        if type(version) is not int or version < 1:
            raise _error(f"{p}: metadata field 'format_version' must be an integer "
                         f"1..{FORMAT_VERSION}, got {_short(version)}")
        if not isinstance(meta.get("config"), dict):
            raise _error(f"{p} holds no model config (metadata field 'config' must be an "
                         f"object, got {_short(meta.get('config'))})")
    try:
        validate_metadata(meta)
    except MetadataError as e:
        raise _error(f"{p}: {e}") from None
    return meta


def _check_arrays(p: Path, optimizer: dict[str, np.ndarray], state: dict[str, np.ndarray],
                  meta: dict[str, Any]) -> None:
    """What the trainer reads from the arrays beyond shapes: scalars, ranges, a permutation."""
    for key, value in optimizer.items():
        if "/" not in key and value.shape != ():  # iterations, learning_rate, extra scalars
            raise _error(f"{p}: optimizer/{key} must be a scalar, got shape {value.shape}")
    iterations = optimizer.get("iterations")
    if iterations is not None and not (iterations.dtype.kind in "iu"
                                       and 0 <= int(iterations) <= 2**53):
        raise _error(f"{p}: optimizer/iterations must be an integer >= 0, got "
                     f"{_short(iterations.item())}")
    lr = optimizer.get("learning_rate")
    if lr is not None and not (math.isfinite(float(lr)) and float(lr) >= 0):
        raise _error(f"{p}: optimizer/learning_rate must be a finite number >= 0, got "
                     f"{_short(lr.item())}")
    position = meta.get("position")
    if not position:
        return
    order, outputs = state.get("order"), state.get("outputs")
    if order is None or outputs is None:
        raise _error(f"{p}: an interrupted checkpoint needs the arrays state/order and "
                     "state/outputs")
    # the trainer indexes the data with it: a permutation of 0..n-1 is always in range
    if order.ndim != 1 or order.dtype.kind not in "iu" or \
            not np.array_equal(np.sort(order), np.arange(len(order))):
        raise _error(f"{p}: state/order must be a permutation of 0..n-1, got {order.dtype} "
                     f"of shape {order.shape}")
    if outputs.ndim < 1 or (position["seen"] and len(outputs) != position["seen"]):
        raise _error(f"{p}: state/outputs must hold one row per sample seen "
                     f"({position['seen']}), got shape {outputs.shape}")


def _short(value: Any) -> str:
    """A bounded repr of a value read from a file."""
    text = reprlib.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _size(n: int) -> str:
    """Bytes in words: 1.0 TiB."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:,} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"
