"""Hostile and broken checkpoint files: bounded, validated, and a one-line CheckpointError.

The files are written by hand (zipfile, crafted .npy headers, a hand-made zip64 archive for the
bomb), so each test would fail against a loader that trusts what a file declares. Whatever can
exhaust memory or hang runs in a subprocess with a memory limit and a timeout.
"""

from __future__ import annotations

import copy
import io
import json
import os
import struct
import subprocess
import sys
import textwrap
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlcli.cli.main import main
from dlcli.config import load_config_text
from dlcli.data import Preprocessor
from dlcli.errors import CheckpointError, DlcliError
from dlcli.io.checkpoint import load_checkpoint, save_checkpoint
from dlcli.nn.restore import restore_model
from dlcli.train.trainer import Interrupted, NullReporter, Trainer

TINY = """
name: tiny
seed: 1
data: {dataset: blobs, n_samples: 60, validation_split: 0.2, test_split: 0.2, batch_size: 16,
       normalize: standardize}
model:
  input_shape: [2]
  layers:
    - {type: Dense, units: 4, activation: relu}
    - {type: Dropout, rate: 0.1}
    - {type: Dense, units: 3, activation: softmax}
loss: sparse_categorical_crossentropy
metrics: [accuracy]
optimizer: {type: adam, learning_rate: 0.01}
training: {epochs: 1, early_stopping: {monitor: val_loss, patience: 2},
           lr_schedule: {type: reduce_on_plateau}}
"""

GiB = 2**30
KERNEL = "weights/dense/kernel.npy"


# -- helpers ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of one epoch (every metadata field filled) plus an interrupted one (position)."""
    root = tmp_path_factory.mktemp("hostile")
    Trainer(load_config_text(textwrap.dedent(TINY)), run_dir=root / "run").fit()

    class StopAfterOneBatch(NullReporter):
        def batch_end(self, batch: int, logs: dict[str, float], samples: int) -> None:
            trainer.request_stop()

    trainer = Trainer(load_config_text(textwrap.dedent(TINY)), run_dir=root / "stopped",
                      reporter=StopAfterOneBatch())
    with pytest.raises(Interrupted):
        trainer.fit()
    return root


@pytest.fixture(scope="module")
def good(run: Path) -> Path:
    return run / "run" / "checkpoints" / "last.npz"


def members_of(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {name: z.read(name) for name in z.namelist()}


def meta_of(path: Path) -> dict[str, Any]:
    with np.load(path) as npz:
        return json.loads(npz["__meta__"].tobytes().decode())


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=array.dtype.hasobject)
    return buf.getvalue()


def npy_header(descr: str, shape: tuple[int, ...]) -> bytes:
    """A version 1.0 .npy header that declares any array, with no data after it."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False,
                                              "shape": shape})
    return buf.getvalue()


def meta_npy(meta: Any) -> bytes:
    return npy(np.frombuffer(json.dumps(meta).encode(), np.uint8))


def write_zip(path: Path, members: dict[str, bytes],
              compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def with_meta(good: Path, path: Path, meta: Any) -> Path:
    """`good`'s arrays with other metadata."""
    return write_zip(path, {**members_of(good), "__meta__.npy": meta_npy(meta)})


def raw_zip(path: Path, entries: list[tuple[str, bytes, int, int]]) -> Path:
    """A zip written byte by byte: (name, deflated payload, declared size, crc) per member.

    The sizes go into zip64 extra fields, so a member may declare more than 4 GiB; nothing
    checks that the payload really inflates to the declared size (that is the point).
    """
    out, directory = bytearray(), bytearray()
    for name, payload, size, crc in entries:
        raw = name.encode()
        extra = struct.pack("<HHQQ", 1, 16, size, len(payload))
        offset = len(out)
        out += struct.pack("<4s2B4HL2L2H", b"PK\x03\x04", 45, 0, 0, zipfile.ZIP_DEFLATED,
                           0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF, len(raw), len(extra))
        out += raw + extra + payload
        directory += struct.pack("<4s4B4HL2L5H2L", b"PK\x01\x02", 45, 3, 45, 0, 0,
                                 zipfile.ZIP_DEFLATED, 0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF,
                                 len(raw), len(extra), 0, 0, 0, 0, offset)
        directory += raw + extra
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries),
                      len(directory), len(out), 0)
    path.write_bytes(bytes(out + directory + end))
    return path


def deflated(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def zeros_bomb(header: bytes, n_bytes: int) -> bytes:
    """A raw deflate stream of `header` then `n_bytes` zero bytes, made in milliseconds.

    After a full flush deflate forgets its history, so the stream of one 16 MiB chunk of zeros
    repeats byte for byte: the bomb is that segment, many times.
    """
    chunk = 16 * 2**20
    assert n_bytes % chunk == 0
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(header) + c.flush(zlib.Z_FULL_FLUSH)
    segment = c.compress(bytes(chunk)) + c.flush(zlib.Z_FULL_FLUSH)
    assert c.compress(bytes(chunk)) + c.flush(zlib.Z_FULL_FLUSH) == segment
    return head + segment * (n_bytes // chunk) + c.flush()


def run_limited(code: str, timeout: float = 60, memory: int = GiB) -> subprocess.CompletedProcess:
    """Run python `code` with an address-space limit and a timeout (a hang fails the test)."""
    prelude = textwrap.dedent(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, ({memory}, {memory}))
    """)
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=timeout)


LOAD = """
    import sys
    from dlcli.errors import CheckpointError
    from dlcli.io.checkpoint import load_checkpoint
    try:
        load_checkpoint(sys.argv[1] if len(sys.argv) > 1 else {path!r})
    except CheckpointError as e:
        print("CheckpointError:", e)
    else:
        print("loaded")
"""


def refused(path: Path | str, *fragments: str) -> str:
    """Load `path`, expecting a one-line CheckpointError that holds every fragment."""
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


# -- the file itself: size, kind, archive, headers ---------------------------------------
def test_a_small_file_declaring_a_terabyte_is_refused_unread(good: Path, tmp_path: Path) -> None:
    members = members_of(good)
    members[KERNEL] = npy_header("<f8", (2**37,)) + bytes(4096)  # 1 TiB declared, 4 KiB held
    path = write_zip(tmp_path / "tera.npz", members)
    assert path.stat().st_size < 20_000
    refused(path, "weights/dense/kernel.npy", "(1.0 TiB)")


def test_a_header_the_directory_contradicts_is_refused(good: Path, tmp_path: Path) -> None:
    members = members_of(good)
    members[KERNEL] = npy_header("<f4", (1000, 1000)) + bytes(64)  # 3.8 MiB declared, 64 B held
    refused(write_zip(tmp_path / "short.npz", members), "(1000, 1000)", "the archive lists")


def test_a_zip_bomb_is_refused_within_a_memory_cap(good: Path, tmp_path: Path) -> None:
    n = 5 * GiB  # above the 4 GiB cap, as one member
    header = npy_header("|u1", (n,))
    bomb = zeros_bomb(header, n)
    assert len(bomb) < 10 * 2**20
    meta = members_of(good)["__meta__.npy"]
    path = raw_zip(tmp_path / "bomb.npz", [
        ("__meta__.npy", deflated(meta), len(meta), zlib.crc32(meta)),
        (KERNEL, bomb, len(header) + n, 0),  # the CRC is checked only after inflating it all
    ])
    # the bomb is real: numpy's own loader runs out of memory under the same cap
    control = run_limited(f"""
        import numpy as np
        try:
            np.load({str(path)!r})[{KERNEL[:-4]!r}]
        except MemoryError:
            print("MemoryError")
    """)
    assert "MemoryError" in control.stdout, control.stderr
    res = run_limited(LOAD.format(path=str(path)))
    assert res.returncode == 0, res.stderr
    assert "CheckpointError:" in res.stdout and "5.0 GiB" in res.stdout, res.stdout


def test_a_member_inflating_beyond_what_deflate_can_is_refused(good: Path,
                                                                tmp_path: Path) -> None:
    n = 1 * GiB  # under the cap, but 1 GiB from a few bytes is no deflate stream
    header = npy_header("|u1", (n,))
    meta = members_of(good)["__meta__.npy"]
    path = raw_zip(tmp_path / "liar.npz", [
        ("__meta__.npy", deflated(meta), len(meta), zlib.crc32(meta)),
        (KERNEL, deflated(header + bytes(1000)), len(header) + n, 0),
    ])
    res = run_limited(LOAD.format(path=str(path)))
    assert res.returncode == 0, res.stderr
    assert "which no stored or deflated member can be" in res.stdout, res.stdout


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_dev_zero_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "zero.npz"
    link.symlink_to("/dev/zero")
    for path in ("/dev/zero", str(link)):
        res = run_limited(LOAD.format(path=path), timeout=30)
        assert res.returncode == 0, res.stderr
        assert "is not a regular file" in res.stdout, res.stdout


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    # a loader that opens the FIFO blocks until a writer comes: the timeout fails the test
    res = run_limited(LOAD.format(path=str(fifo)), timeout=30)
    assert res.returncode == 0, res.stderr
    assert "is not a regular file" in res.stdout, res.stdout
    plain = tmp_path / "pipe"  # no .npz: `dlcli summary` asks is_checkpoint, which must not open it
    os.mkfifo(plain)
    res = run_limited(f"""
        from dlcli.io.checkpoint import is_checkpoint
        print(is_checkpoint({str(plain)!r}))
    """, timeout=30)
    assert res.stdout.strip() == "False", res.stderr


class _Mkdir:
    """Unpickling this makes a folder: proof that a pickle was run."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return os.mkdir, (self.path,)


def test_object_arrays_are_refused_and_never_unpickled(good: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pickle-ran"
    members = members_of(good)
    members[KERNEL] = npy(np.array([_Mkdir(marker), 1], dtype=object))
    refused(write_zip(tmp_path / "object.npz", members), "kernel", "object", "numbers only")
    assert not marker.exists()


@pytest.mark.parametrize("member, fragment", [
    (npy(np.zeros(3, np.complex64)), "complex64"),
    (npy(np.zeros(3, [("a", "<f4"), ("b", "<i4")])), "numbers only"),
    (npy(np.array(["a", "b"])), "numbers only"),
    (npy(np.zeros(3, "datetime64[s]")), "numbers only"),
    (b"\x93NUMPY\x03\x00" + bytes(40), "version (3, 0)"),
    (b"\x93NUMPY\x02\x00\xff\xff\xff\x7f" + bytes(40), "header of 2,147,483,647 bytes"),
    (b"\x93NUMPY\x01\x00\x10\x00{'descr': 1}   \n", "no valid .npy header"),
    (npy_header("<f4", (-5,)), "invalid shape"),
    (b"not an npy file at all", "no valid .npy header"),
    (b"", "no valid .npy header"),
])
def test_bad_members_are_refused(good: Path, tmp_path: Path, member: bytes,
                                 fragment: str) -> None:
    members = members_of(good)
    members[KERNEL] = member
    refused(write_zip(tmp_path / "bad.npz", members), fragment)


def test_archive_level_problems(good: Path, tmp_path: Path) -> None:
    members = members_of(good)
    bz = write_zip(tmp_path / "bz.npz", members, zipfile.ZIP_BZIP2)
    refused(bz, "compression method 12")
    with pytest.warns(UserWarning, match="Duplicate name"):
        dup = write_zip(tmp_path / "dup.npz", members)
        with zipfile.ZipFile(dup, "a") as z:
            z.writestr(KERNEL, members[KERNEL])
    refused(dup, "same name twice")
    # the encryption flag, set by hand in the local header and the directory
    data = bytearray(good.read_bytes())
    for sig, at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        i = data.find(sig)
        data[i + at] |= 1
    enc = tmp_path / "enc.npz"
    enc.write_bytes(bytes(data))
    refused(enc, "encrypted")
    refused(write_zip(tmp_path / "nometa.npz", {KERNEL: members[KERNEL]}), "no metadata")


def test_the_same_stream_listed_twice_is_refused(good: Path, tmp_path: Path) -> None:
    """The overlapping-entries zip bomb: directory entries that share one compressed stream."""
    data = good.read_bytes()
    cd, end = data.find(b"PK\x01\x02"), data.rfind(b"PK\x05\x06")
    n_name, n_extra, n_comment = struct.unpack("<3H", data[cd + 28:cd + 34])
    entry = data[cd:cd + 46 + n_name + n_extra + n_comment]
    name = data[cd + 46:cd + 46 + n_name]
    assert name == b"__meta__.npy"
    clone = entry.replace(name, b"state/xx.npy")  # same length, another name, same data
    eocd = bytearray(data[end:])
    entries, cd_size = struct.unpack("<HL", eocd[10:16])
    eocd[8:12] = struct.pack("<HH", entries + 1, entries + 1)
    eocd[12:16] = struct.pack("<L", cd_size + len(clone))
    path = tmp_path / "twice.npz"
    path.write_bytes(data[:end] + clone + bytes(eocd))
    refused(path, "overlap")


def test_corrupt_data_is_caught_by_the_crc(good: Path, tmp_path: Path) -> None:
    data = bytearray(good.read_bytes())
    i = data.find(b"\x93NUMPY", data.find(KERNEL.encode())) + 128 + 4  # inside kernel's data
    data[i] ^= 0xFF
    path = tmp_path / "flipped.npz"
    path.write_bytes(bytes(data))
    refused(path, "corrupt or truncated", "CRC")


def test_fortran_order_and_big_endian_arrays_still_load(good: Path, tmp_path: Path) -> None:
    ckpt = load_checkpoint(good)
    members = members_of(good)
    kernel = ckpt.weights["dense/kernel"]
    members[KERNEL] = npy(np.asfortranarray(kernel.astype(">f8")))
    got = load_checkpoint(write_zip(tmp_path / "f.npz", members, zipfile.ZIP_DEFLATED))
    np.testing.assert_array_equal(got.weights["dense/kernel"], kernel)
    assert got.weights["dense/kernel"].flags.f_contiguous
    restore_model(got)


def test_a_file_larger_than_the_cap_is_refused_before_reading(good: Path,
                                                              tmp_path: Path) -> None:
    path = tmp_path / "sparse.npz"
    path.write_bytes(good.read_bytes())
    with open(path, "r+b") as f:
        f.truncate(6 * GiB)  # sparse: no disk used, but 6 GiB to read
    refused(path, "is 6.0 GiB, more than a checkpoint may be")


# -- folders ------------------------------------------------------------------------------
def test_a_folder_gets_a_hint_that_exists(run: Path, tmp_path: Path) -> None:
    assert "run/checkpoints/best" in refused(run / "run", "is a folder", "e.g.")
    checkpoints = run / "run" / "checkpoints"
    assert refused(checkpoints, "is a folder").endswith(f"e.g. {checkpoints / 'best'}")
    stopped = run / "stopped"  # interrupted in its first epoch: a last checkpoint, no best
    assert refused(stopped, "is a folder").endswith(f"e.g. {stopped / 'checkpoints' / 'last'}")
    empty = tmp_path / "empty"
    empty.mkdir()
    refused(empty, "is a folder with no checkpoint in it")


# -- metadata -----------------------------------------------------------------------------
def _set(meta: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    meta = copy.deepcopy(meta)
    *parents, last = path.split(".")
    node: Any = meta
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is _DROP:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return meta


_DROP = object()

META_CASES = [
    ("epoch", -3, "metadata field 'epoch' must be an integer >= 0, got -3"),
    ("epoch", True, "metadata field 'epoch' must be an integer >= 0, got True"),
    ("epoch", 2**64, "metadata field 'epoch' must be an integer >= 0"),
    ("epoch", "1", "metadata field 'epoch' must be an integer >= 0, got '1'"),
    ("format_version", True, "'format_version' must be an integer 1..1, got True"),
    ("format_version", 0, "'format_version' must be an integer 1..1, got 0"),
    ("format_version", 7, "format version 7; this dlcli"),
    ("format", "other", "not a dlcli checkpoint (format 'other')"),
    ("config", [1, 2], "holds no model config"),
    ("config", _DROP, "holds no model config"),
    ("history.0.loss", "low", "'history[0].loss' must be a number, got 'low'"),
    ("history", {"a": 1}, "'history' must be a list of {name: number or null} rows"),
    ("rng.model.state.inc", "x", "'rng.model' must be a numpy PCG64 bit_generator state"),
    ("rng.shuffle.bit_generator", "MT19937", "'rng.shuffle' must be a numpy PCG64"),
    ("optimizer.learning_rate", -1.0, "'optimizer.learning_rate' must be a finite number >= 0"),
    ("schedule.wait", _DROP, "'schedule' must be {} or have all of"),
    ("schedule.monitor.mode", "sideways", "'schedule.monitor.mode' must be 'min' or 'max'"),
    ("early_stopping.best_epoch", _DROP, "'early_stopping.best_epoch' is missing"),
    ("best.epoch", 5, "best.epoch 5 (0-based) must come before the checkpoint's epoch 1"),
    ("best.best", float("inf"), "'best.best' must be a finite number or null, got inf"),
    ("class_names", ["a", 2], "'class_names[1]' must be a string, got 2"),
    ("preprocessing.scale", [1.0], "must have offset and scale of one equal length"),
    ("preprocessing.scale", [0.0, 1.0], "'preprocessing.scale[0]' must be a number > 0"),
    ("preprocessing.extra", 1, "'preprocessing.extra' is not a known key"),
    ("preprocessing.mode", "whiten", "'preprocessing.mode' must be one of scale, standardize"),
    ("preprocessing.offset", _DROP, "must have both offset and scale, or neither"),
    ("interrupted", "yes", "'interrupted' must be true or false, got 'yes'"),
    ("task", 3, "'task' must be 'classification' or 'regression', got 3"),
]


@pytest.mark.parametrize("path, value, fragment", META_CASES, ids=[c[0] for c in META_CASES])
def test_metadata_is_checked_field_by_field(good: Path, tmp_path: Path, path: str, value: Any,
                                            fragment: str) -> None:
    meta = _set(meta_of(good), path, value)
    message = refused(with_meta(good, tmp_path / "m.npz", meta), fragment)
    assert message.startswith(str(tmp_path / "m.npz"))


@pytest.mark.parametrize("meta, fragment", [
    ([1, 2, 3], "metadata must be a JSON object, got [1, 2, 3]"),
    ("{}", "metadata must be a JSON object"),
    (None, "metadata must be a JSON object"),
])
def test_metadata_that_is_no_object(good: Path, tmp_path: Path, meta: Any,
                                    fragment: str) -> None:
    refused(with_meta(good, tmp_path / "m.npz", meta), fragment)


def test_deep_or_broken_json_is_refused(good: Path, tmp_path: Path) -> None:
    meta = meta_of(good)
    meta["config"]["deep"] = json.loads("[" * 500 + "]" * 500)
    refused(with_meta(good, tmp_path / "deep.npz", meta), "field 'config' is nested more than 64")
    meta = {**meta_of(good), "future": json.loads("{\"a\": " * 100 + "1" + "}" * 100)}
    refused(with_meta(good, tmp_path / "deep.npz", meta), "field 'future' is nested more than 64")
    members = members_of(good)
    for raw, fragment in ((b"[" * 100_000, "corrupt metadata"), (b"\xff\xfe", "corrupt metadata"),
                          (b'{"epoch": 1' + b"1" * 5000 + b"}", "corrupt metadata")):
        members["__meta__.npy"] = npy(np.frombuffer(raw, np.uint8))
        refused(write_zip(tmp_path / "j.npz", members), fragment)
    members["__meta__.npy"] = npy(np.zeros((2, 2), np.uint8))
    refused(write_zip(tmp_path / "j.npz", members), "__meta__ must be a 1-D uint8 array")


def test_interrupted_checkpoints_check_their_position(run: Path, tmp_path: Path) -> None:
    last = run / "stopped" / "checkpoints" / "last.npz"
    ckpt = load_checkpoint(last)
    assert ckpt.meta["position"]["batch"] == 1
    assert set(ckpt.state) == {"order", "outputs", "metric_sums"}
    meta = meta_of(last)
    for path, value, fragment in (
        ("position.seen", -1, "'position.seen' must be an integer >= 0, got -1"),
        ("position.epoch", 3, "position.epoch 3 must equal epoch 0"),
        ("position.seconds", float("nan"), "'position.seconds' must be a finite number >= 0"),
        ("position.batch", _DROP, "'position.batch' is missing"),
    ):
        refused(with_meta(last, tmp_path / "p.npz", _set(meta, path, value)), fragment)
    members = members_of(last)
    for order, fragment in ((np.array([0, 0, 1]), "permutation"),
                            (np.arange(36, dtype=np.float64), "permutation"),
                            (np.arange(36) + 10**12, "permutation")):
        refused(write_zip(tmp_path / "o.npz", {**members, "state/order.npy": npy(order)}),
                fragment)
    refused(write_zip(tmp_path / "o.npz", {**members, "state/outputs.npy": npy(np.zeros((9, 3)))}),
            "one row per sample seen (16)")
    del members["state/order.npy"]
    refused(write_zip(tmp_path / "o.npz", members), "needs the arrays state/order")


def test_optimizer_scalars_are_checked(good: Path, tmp_path: Path) -> None:
    members = members_of(good)
    for name, value, fragment in (
        ("optimizer/iterations.npy", np.array([1, 2]), "optimizer/iterations must be a scalar"),
        ("optimizer/iterations.npy", np.array(-5), "optimizer/iterations must be an integer"),
        ("optimizer/iterations.npy", np.array(2.5), "optimizer/iterations must be an integer"),
        ("optimizer/learning_rate.npy", np.array(np.nan), "learning_rate must be a finite"),
    ):
        refused(write_zip(tmp_path / "o.npz", {**members, name: npy(value)}), fragment)


def test_restore_model_errors_are_one_line(good: Path) -> None:
    ckpt = load_checkpoint(good)
    bad = copy.deepcopy(ckpt)
    bad.config["model"]["layers"][0]["units"] = "four"
    bad.config["optimizer"]["type"] = "adamm"
    for ckpt_, fragment in (
        (bad, "not valid for this dlcli"),
        (_with(ckpt, preprocessing={"mode": "standardize", "offset": [0.0] * 5,
                                    "scale": [1.0] * 5}), "statistics for 5 features"),
        (_with(ckpt, weights={"dense/kernel": np.zeros((9, 9))}), "do not fit its model"),
    ):
        with pytest.raises(CheckpointError, match=fragment) as err:
            restore_model(ckpt_)
        assert "\n" not in str(err.value)


def _with(ckpt: Any, weights: dict[str, np.ndarray] | None = None, **meta: Any) -> Any:
    other = copy.deepcopy(ckpt)
    other.meta.update(meta)
    if weights is not None:
        other.weights.update(weights)
    return other


def test_a_valid_checkpoint_still_round_trips(good: Path, tmp_path: Path) -> None:
    ckpt = load_checkpoint(good)
    again = load_checkpoint(save_checkpoint(tmp_path / "again", ckpt))
    assert again.meta == ckpt.meta and again.config == ckpt.config
    assert again.meta["interrupted"] is False and again.epoch == 1
    assert set(again.weights) == set(ckpt.weights)
    assert set(again.optimizer) == set(ckpt.optimizer)


# -- metadata mutations, with hypothesis --------------------------------------------------
def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path inside a JSON value."""
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


_scalars = st.one_of(
    st.none(), st.booleans(), st.text(max_size=8),
    st.integers(-(2**70), 2**70), st.sampled_from([-1, 0, 1, 2**31, 2**53 + 1, -(2**63)]),
    st.floats(allow_nan=True, allow_infinity=True),
)
_junk = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8)
# inside the model config only junk that cannot ask for a huge model (see the report on
# restore_model: a config may describe a model too large to allocate)
_config_junk = st.one_of(st.none(), st.booleans(), st.text(max_size=8),
                         st.sampled_from([-1, 0, 1]), st.lists(st.none(), max_size=2),
                         st.dictionaries(st.text(max_size=4), st.none(), max_size=2))


@st.composite
def mutated(draw: st.DrawFn, meta: dict[str, Any]) -> dict[str, Any]:
    meta = copy.deepcopy(meta)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(meta)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        *parents, last = path
        node: Any = meta
        for key in parents:
            node = node[key]
        action = draw(st.sampled_from(["drop", "replace", "negate"]))
        if action == "drop":
            del node[last]
        elif action == "negate" and isinstance(node[last], (int, float)) \
                and not isinstance(node[last], bool):
            node[last] = -node[last] - 1
        else:
            node[last] = draw(_config_junk if path[0] == "config" else _junk)
    return meta


def _outcome(path: Path, run_dir: Path) -> str:
    """'ok' or 'refused'; anything but a one-line CheckpointError fails the test.

    A checkpoint that loads is then used as eval, predict and --resume use it, where only
    dlcli's expected errors may come out (a field that slipped through would raise others).
    """
    try:
        ckpt = load_checkpoint(path)
        restore_model(ckpt)
    except CheckpointError as e:
        assert "\n" not in str(e) and str(e), repr(str(e))
        return "refused"
    assert isinstance(ckpt.epoch, int)
    try:
        Preprocessor.from_dict(ckpt.meta.get("preprocessing") or {"mode": "none"}).apply(
            np.ones((1, 2), np.float32))
        cfg = load_config_text(textwrap.dedent(TINY), ["training.epochs=2"])
        Trainer(cfg, run_dir=run_dir, resume=ckpt).fit()
    except DlcliError:
        pass  # e.g. nothing left to resume: a message, exit code 2
    return "ok"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mutations")


@pytest.mark.parametrize("which", ["run", "stopped"])
@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_metadata_loads_or_is_a_checkpoint_error(run: Path, scratch: Path, which: str,
                                                         data: st.DataObject) -> None:
    good = run / which / "checkpoints" / "last.npz"
    meta = data.draw(mutated(meta_of(good)))
    run_dir = scratch / f"{which}-{len(list(scratch.iterdir()))}"
    _outcome(with_meta(good, scratch / f"{which}.npz", meta), run_dir)


def test_the_cli_prints_one_error_for_mutated_checkpoints(good: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    meta = meta_of(good)
    for i, (path, value) in enumerate((("epoch", -3), ("history.0", [1, 2]),
                                       ("rng.model", {"bit_generator": "PCG64"}),
                                       ("preprocessing.offset", [float("nan"), 1.0]),
                                       ("config.model.layers", "nope"))):
        ckpt = with_meta(good, tmp_path / f"cli{i}.npz", _set(meta, path, value))
        for command in ("eval", "summary"):
            res = runner.invoke(main, [command, str(ckpt)])
            assert res.exit_code == 2, res.output
            assert "error:" in res.output and "Traceback" not in res.output, res.output
    res = runner.invoke(main, ["eval", "/dev/zero"])
    assert res.exit_code == 2 and "not a regular file" in res.output, res.output


@pytest.mark.parametrize(
    ("name", "head", "says"),
    [
        ("model.onnx", b"\x08\x07\x12\x04onnx", "an ONNX model: give the checkpoint"),
        ("w.safetensors", struct.pack("<Q", 2) + b"{}", "a safetensors weights file, which "
                                                          "predict and export read"),
        ("w.bin", struct.pack("<Q", 2) + b"{}  ", "named *.safetensors"),
        ("config.yaml", b"name: x\n", "a YAML file: a config is trained with dlcli train"),
        ("junk.dat", b"\x00\x01\x02\x03 junk", "(not an npz archive)"),
    ],
)
def test_other_files_given_as_a_checkpoint_are_named(tmp_path: Path, name: str, head: bytes,
                                                     says: str) -> None:
    path = tmp_path / name
    path.write_bytes(head)
    with pytest.raises(CheckpointError, match="is not a dlcli checkpoint") as info:
        load_checkpoint(path)
    assert says in str(info.value)
    result = CliRunner().invoke(main, ["eval", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output and says in result.output
