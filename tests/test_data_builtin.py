"""Built-in datasets: lookup order, offline errors, downloads (never over the network), CIFAR."""

import dataclasses
import gzip
import hashlib
import io
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from dlcli.data import builtin, download
from dlcli.data.builtin import BUILTINS, IDX_FILES, cache_dir, load_builtin, search_dirs
from dlcli.data.download import download_file
from dlcli.data.idx import write_idx
from dlcli.errors import DataError

REAL_FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real cache, system folder, environment or network in these tests."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("DLCLI_DATA", raising=False)
    monkeypatch.delenv("DLCLI_OFFLINE", raising=False)
    system = tmp_path / "system" / "fashion-mnist"
    monkeypatch.setattr(builtin, "SYSTEM_DIRS", {"fashion_mnist": (system,)})

    def no_network(url, timeout=0):
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(download, "open_url", no_network)
    return system


def write_mnist_like(folder: Path, n_train: int, n_test: int, gz: bool = True) -> None:
    """Tiny IDX files named like the real ones; pixel values = n_train, to tell copies apart."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = [
        np.full((n_train, 28, 28), n_train, dtype=np.uint8),
        (np.arange(n_train) % 10).astype(np.uint8),
        np.full((n_test, 28, 28), n_train, dtype=np.uint8),
        (np.arange(n_test) % 10).astype(np.uint8),
    ]
    for name, a in zip(IDX_FILES, arrays, strict=True):
        write_idx(folder / (name if gz else name.removesuffix(".gz")), a)


def test_search_order(tmp_path, monkeypatch, isolated):
    monkeypatch.setenv("DLCLI_DATA", str(tmp_path / "env"))
    dirs = search_dirs("fashion_mnist", tmp_path / "dd")
    assert dirs == [
        tmp_path / "dd" / "fashion_mnist",
        tmp_path / "dd",
        tmp_path / "env" / "fashion_mnist",
        tmp_path / "env",
        tmp_path / "xdg" / "dlcli" / "fashion_mnist",
        isolated,
    ]


def test_cache_dir_defaults_to_home(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir("mnist") == tmp_path / "home" / ".cache" / "dlcli" / "mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert cache_dir("mnist") == tmp_path / "home" / ".cache" / "dlcli" / "mnist"


def test_lookup_order_data_dir_then_cache_then_system(tmp_path, isolated):
    data_dir = tmp_path / "dd"
    write_mnist_like(data_dir, 3, 2)
    write_mnist_like(cache_dir("fashion_mnist"), 4, 2)
    write_mnist_like(isolated, 5, 2)

    d = load_builtin("fashion_mnist", data_dir=data_dir)
    assert len(d.x_train) == 3 and d.source == data_dir
    assert d.x_train.shape == (3, 28, 28) and d.x_train.dtype == np.uint8
    assert d.y_train.dtype == np.int64 and d.class_names[0] == "T-shirt/top"
    assert d.class_names[9] == "Ankle boot" and len(d.x_test) == 2

    d = load_builtin("fashion_mnist", data_dir=tmp_path / "empty")
    assert len(d.x_train) == 4 and d.source == cache_dir("fashion_mnist")
    for f in cache_dir("fashion_mnist").iterdir():
        f.unlink()
    d = load_builtin("fashion_mnist")
    assert len(d.x_train) == 5 and d.source == isolated


def test_dataset_subfolder_env_and_raw_files(tmp_path, monkeypatch):
    # <dir>/<dataset> wins over <dir>; un-gzipped files count too.
    write_mnist_like(tmp_path / "dd", 3, 1)
    write_mnist_like(tmp_path / "dd" / "mnist", 6, 1, gz=False)
    assert len(load_builtin("mnist", data_dir=tmp_path / "dd").x_train) == 6
    monkeypatch.setenv("DLCLI_DATA", str(tmp_path / "dd"))
    d = load_builtin("mnist")
    assert len(d.x_train) == 6 and d.class_names == [str(i) for i in range(10)]


def test_incomplete_folder_is_skipped(tmp_path, isolated):
    write_mnist_like(tmp_path / "dd", 3, 1)
    (tmp_path / "dd" / "t10k-labels-idx1-ubyte.gz").unlink()
    write_mnist_like(isolated, 5, 1)
    assert len(load_builtin("fashion_mnist", data_dir=tmp_path / "dd").x_train) == 5


def test_offline_error_says_where_it_looked(tmp_path, isolated):
    with pytest.raises(DataError) as e:
        load_builtin("fashion_mnist", data_dir=tmp_path / "dd")
    msg = str(e.value)
    for folder in (
        tmp_path / "dd" / "fashion_mnist",
        tmp_path / "dd",
        isolated,
        cache_dir("fashion_mnist"),
    ):
        assert f"  {folder}\n" in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "network is unreachable" in msg
    assert "zalandoresearch/fashion-mnist" in msg and "train-images-idx3-ubyte.gz" in msg
    assert "--data-dir" in msg
    assert not any(cache_dir("fashion_mnist").glob("*"))


def test_offline_error_for_mnist_and_cifar(tmp_path):
    with pytest.raises(DataError, match=r"(?s)ossci-datasets.*--data-dir"):
        load_builtin("mnist")
    with pytest.raises(DataError, match=r"cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"):
        load_builtin("cifar10")


def test_dlcli_offline_skips_the_download(monkeypatch):
    def must_not_run(url, timeout=0):
        raise AssertionError("downloaded although DLCLI_OFFLINE is set")

    monkeypatch.setattr(download, "open_url", must_not_run)
    monkeypatch.setenv("DLCLI_OFFLINE", "1")
    with pytest.raises(DataError, match="DLCLI_OFFLINE"):
        load_builtin("mnist")


def _serve(monkeypatch, tmp_path, name, md5=None, mirrors=()):
    """Point a built-in at file:// URLs of tiny files written here."""
    origin = tmp_path / "origin"
    write_mnist_like(origin, 7, 3)
    digests = {f: hashlib.md5((origin / f).read_bytes()).hexdigest() for f in IDX_FILES}
    spec = dataclasses.replace(
        BUILTINS[name],
        urls=(*mirrors, origin.as_uri() + "/"),
        md5=md5 if md5 is not None else digests,
    )
    monkeypatch.setitem(BUILTINS, name, spec)
    monkeypatch.setattr(download, "open_url", _real_open_url)
    return origin


_real_open_url = download.open_url


def test_download_into_cache_with_progress(monkeypatch, tmp_path):
    origin = _serve(monkeypatch, tmp_path, "mnist")
    calls = []
    d = load_builtin("mnist", progress=lambda done, total: calls.append((done, total)))
    assert len(d.x_train) == 7 and d.source == cache_dir("mnist")
    sizes = sorted((origin / f).stat().st_size for f in IDX_FILES)
    assert sorted(done for done, total in calls if done == total) == sizes
    assert sorted(p.name for p in cache_dir("mnist").iterdir()) == sorted(IDX_FILES)

    # Found in the cache the second time: no network needed.
    monkeypatch.setattr(download, "open_url", lambda url, timeout=0: 1 / 0)
    assert len(load_builtin("mnist").x_train) == 7


def test_download_falls_back_to_a_mirror(monkeypatch, tmp_path):
    _serve(monkeypatch, tmp_path, "mnist", mirrors=((tmp_path / "nowhere").as_uri() + "/",))
    assert len(load_builtin("mnist").x_train) == 7


def test_checksum_mismatch_leaves_nothing_in_cache(monkeypatch, tmp_path):
    _serve(monkeypatch, tmp_path, "fashion_mnist", md5={f: "0" * 32 for f in IDX_FILES})
    with pytest.raises(DataError, match="checksum mismatch: expected md5 0000") as e:
        load_builtin("fashion_mnist")
    assert "Looked in" in str(e.value)
    cache = cache_dir("fashion_mnist")
    assert not cache.exists() or not any(cache.iterdir())


def test_download_file_cut_off_and_sha256(monkeypatch, tmp_path):
    payload = b"x" * 1000

    def short(url, timeout=0):
        return io.BytesIO(payload[:600]), len(payload)

    monkeypatch.setattr(download, "open_url", short)
    with pytest.raises(DataError, match="cut off after 600 of 1000 bytes"):
        download_file(["http://example.invalid/f"], tmp_path / "c" / "f")
    assert list((tmp_path / "c").iterdir()) == []

    monkeypatch.setattr(download, "open_url", lambda url, timeout=0: (io.BytesIO(payload), None))
    good = hashlib.sha256(payload).hexdigest()
    seen = []
    download_file(["u"], tmp_path / "c" / "f", sha256=good, progress=lambda d, t: seen.append(t))
    assert (tmp_path / "c" / "f").read_bytes() == payload and seen == [None]
    with pytest.raises(DataError, match="expected sha256"):
        download_file(["u"], tmp_path / "c" / "g", sha256="ab" * 32)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["f"]


def test_corrupt_local_copy_is_reported(tmp_path):
    write_mnist_like(cache_dir("mnist"), 3, 2)
    path = cache_dir("mnist") / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 8))
    with pytest.raises(DataError, match=r"unusable: .*t10k-images.*truncated.*delete the cached"):
        load_builtin("mnist")


def test_wrong_image_shape_is_reported(tmp_path):
    write_mnist_like(tmp_path / "dd", 3, 2)
    write_idx(tmp_path / "dd" / "train-images-idx3-ubyte.gz", np.zeros((3, 20, 20), np.uint8))
    with pytest.raises(DataError, match=r"expected uint8 images of shape \(N, 28, 28\)"):
        load_builtin("mnist", data_dir=tmp_path / "dd")


def _cifar_batch(n: int, first_label: int) -> bytes:
    """n records whose red, green and blue planes are 1, 2 and 3; labels count up."""
    out = bytearray()
    for i in range(n):
        out.append((first_label + i) % 10)
        out += bytes([1]) * 1024 + bytes([2]) * 1024 + bytes([3]) * 1024
    return bytes(out)


def _cifar_files() -> dict[str, bytes]:
    files = {f"data_batch_{i}.bin": _cifar_batch(2, i) for i in range(1, 6)}
    files["test_batch.bin"] = _cifar_batch(3, 0)
    return files


def _check_cifar(d):
    assert d.x_train.shape == (10, 32, 32, 3) and d.x_train.dtype == np.uint8
    assert d.x_test.shape == (3, 32, 32, 3) and d.y_test.tolist() == [0, 1, 2]
    assert d.y_train.tolist()[:4] == [1, 2, 2, 3]
    # Channel-major records become channels-last images.
    assert np.all(d.x_train[..., 0] == 1) and np.all(d.x_train[..., 2] == 3)
    assert d.class_names[0] == "airplane" and d.class_names[9] == "truck"


def test_cifar_from_extracted_folder(tmp_path):
    folder = tmp_path / "dd" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for name, data in _cifar_files().items():
        (folder / name).write_bytes(data)
    _check_cifar(load_builtin("cifar10", data_dir=tmp_path / "dd"))


def test_cifar_from_archive(tmp_path):
    archive = cache_dir("cifar10") / "cifar-10-binary.tar.gz"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in _cifar_files().items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    d = load_builtin("cifar10")
    _check_cifar(d)
    assert d.source == archive


def test_cifar_corrupt(tmp_path):
    folder = tmp_path / "dd"
    folder.mkdir()
    for name, data in _cifar_files().items():
        (folder / name).write_bytes(data[:-5] if name == "test_batch.bin" else data)
    with pytest.raises(DataError, match="test_batch.bin: .* not a whole number of 3073-byte"):
        load_builtin("cifar10", data_dir=folder)
    (folder / "cifar-10-binary.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(DataError, match="corrupt or truncated archive"):
        load_builtin("cifar10", data_dir=folder)


@pytest.mark.skipif(not REAL_FASHION.exists(), reason="dataset-fashion-mnist is not installed")
def test_real_system_fashion_mnist(monkeypatch):
    monkeypatch.setattr(builtin, "SYSTEM_DIRS", {"fashion_mnist": (REAL_FASHION.parent,)})
    d = load_builtin("fashion_mnist")
    assert d.x_train.shape == (60000, 28, 28) and d.x_test.shape == (10000, 28, 28)
    assert np.bincount(d.y_train).tolist() == [6000] * 10
