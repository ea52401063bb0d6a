"""Built-in datasets: Fashion-MNIST, MNIST, CIFAR-10 (binary version), with their official splits.

Looked up, in order, in: the data_dir argument (CLI --data-dir), $DLCLI_DATA (each as
<dir>/<dataset> and <dir> itself), the user cache (<$XDG_CACHE_HOME or ~/.cache>/dlcli/<dataset>)
and system folders (Debian's dataset-fashion-mnist package). Missing everywhere: downloaded into
the cache from the dataset's public address, checked against its published MD5.
"""

from __future__ import annotations

import os
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlcli.data.download import ProgressFn, download_file
from dlcli.data.idx import read_idx
from dlcli.errors import DataError

IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
CIFAR_ARCHIVE = "cifar-10-binary.tar.gz"
CIFAR_FOLDER = "cifar-10-batches-bin"
CIFAR_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR_TEST = "test_batch.bin"
CIFAR_RECORD = 1 + 32 * 32 * 3  # label byte, then 1024 red, 1024 green, 1024 blue bytes

# Where packages install datasets. Tests point this at a temp folder.
SYSTEM_DIRS: dict[str, tuple[Path, ...]] = {
    "fashion_mnist": (Path("/usr/share/datasets/fashion-mnist"),),
}


@dataclass(frozen=True)
class BuiltinSpec:
    """What a built-in dataset is made of and where it is published."""

    name: str
    files: tuple[str, ...]
    md5: dict[str, str]  # published MD5 of each downloaded file
    urls: tuple[str, ...]  # base URLs ending in "/", tried in order
    class_names: tuple[str, ...]
    install_hint: str  # extra way to get the files, besides downloading them


# MD5s as published by the dataset authors (Fashion-MNIST README, the CIFAR page) and
# used by torchvision for the MNIST mirror.
BUILTINS: dict[str, BuiltinSpec] = {
    "fashion_mnist": BuiltinSpec(
        name="fashion_mnist",
        files=IDX_FILES,
        md5={
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        urls=(
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        ),
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        install_hint=(
            "apt-get install dataset-fashion-mnist (installs /usr/share/datasets/fashion-mnist)"
        ),
    ),
    "mnist": BuiltinSpec(
        name="mnist",
        files=IDX_FILES,
        md5={
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        urls=("https://ossci-datasets.s3.amazonaws.com/mnist/",),
        class_names=tuple(str(d) for d in range(10)),
        install_hint="",
    ),
    "cifar10": BuiltinSpec(
        name="cifar10",
        files=(CIFAR_ARCHIVE,),
        md5={CIFAR_ARCHIVE: "c32a1d4ab5d03f1284b67883e8d87530"},
        urls=("https://www.cs.toronto.edu/~kriz/",),
        class_names=(
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        ),
        install_hint="",
    ),
}


@dataclass
class BuiltinData:
    """The official train and test splits of a built-in dataset."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    source: Path  # the folder or archive the data came from


def cache_root() -> Path:
    """<$XDG_CACHE_HOME or ~/.cache>/dlcli (a relative XDG_CACHE_HOME is ignored, per the spec)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "dlcli"


def cache_dir(name: str) -> Path:
    """The cache folder of one dataset."""
    return cache_root() / name


def search_dirs(name: str, data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Folders searched for dataset `name`, in order, without duplicates."""
    dirs: list[Path] = []
    for root in (data_dir, os.environ.get("DLCLI_DATA") or None):
        if root:
            root = Path(root).expanduser()
            dirs += [root / name, root]
    dirs.append(cache_dir(name))
    dirs += SYSTEM_DIRS.get(name, ())
    seen: set[Path] = set()
    return [d for d in dirs if not (d in seen or seen.add(d))]


def _locate(spec: BuiltinSpec, folder: Path) -> dict[str, Path] | None:
    """Paths of the dataset's files in `folder`, or None when any is missing."""
    if spec.name == "cifar10":
        archive = folder / CIFAR_ARCHIVE
        if archive.is_file():
            return {CIFAR_ARCHIVE: archive}
        for d in (folder / CIFAR_FOLDER, folder):
            bins = {n: d / n for n in (*CIFAR_TRAIN, CIFAR_TEST)}
            if all(p.is_file() for p in bins.values()):
                return bins
        return None
    found = {}
    for fname in spec.files:
        # Either the published .gz or the file gunzipped by hand.
        candidates = [folder / fname, folder / fname.removesuffix(".gz")]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            return None
        found[fname] = path
    return found


def load_builtin(
    name: str, data_dir: str | os.PathLike[str] | None = None, progress: ProgressFn | None = None
) -> BuiltinData:
    """Load a built-in dataset, downloading it into the cache when no folder has it.

    Args:
        name: fashion_mnist, mnist or cifar10.
        data_dir: searched first (the CLI's --data-dir).
        progress: progress(bytes_done, bytes_total_or_None) during each file's download.
    Returns:
        uint8 images (N, 28, 28) or (N, 32, 32, 3), int64 labels (N,), the class names.
    Raises:
        DataError: not found and not downloadable (the message lists where it looked and how
            to get the files), or a file that is corrupt.
    """
    spec = BUILTINS[name]
    dirs = search_dirs(name, data_dir)
    for folder in dirs:
        found = _locate(spec, folder)
        if found is not None:
            return _read(spec, found, folder)

    cache = cache_dir(name)
    if os.environ.get("DLCLI_OFFLINE"):
        raise _not_found(spec, dirs, "downloads are turned off (DLCLI_OFFLINE is set)")
    try:
        for fname in spec.files:
            if not any((cache / n).is_file() for n in (fname, fname.removesuffix(".gz"))):
                download_file(
                    [url + fname for url in spec.urls],
                    cache / fname,
                    md5=spec.md5.get(fname),
                    progress=progress,
                )
    except DataError as e:
        raise _not_found(spec, dirs, str(e)) from None
    found = _locate(spec, cache)
    if found is None:  # only if something removed the files under our feet
        raise _not_found(spec, dirs, f"the downloaded files are missing from {cache}")
    return _read(spec, found, cache)


def _not_found(spec: BuiltinSpec, dirs: list[Path], why: str) -> DataError:
    looked = "\n".join(f"  {d}" for d in dirs)
    urls = "\n".join(f"  {spec.urls[0]}{f}" for f in spec.files)
    ways = f"{spec.install_hint}, or download\n" if spec.install_hint else "download\n"
    return DataError(
        f"dataset {spec.name} was not found. Looked in:\n{looked}\n"
        f"Download failed: {why}\n"
        f"To get it: {ways}{urls}\n"
        f"into a folder and pass it with --data-dir (or set DLCLI_DATA)."
    )


def _read(spec: BuiltinSpec, found: dict[str, Path], folder: Path) -> BuiltinData:
    try:
        if spec.name == "cifar10":
            x_train, y_train, x_test, y_test = _read_cifar(found)
        else:
            x_train, y_train, x_test, y_test = _read_mnist_like(found)
    except DataError as e:
        fix = ""
        if folder == cache_dir(spec.name):
            fix = " (delete the cached copy to download it again)"
        raise DataError(f"dataset {spec.name} in {folder} is unusable: {e}{fix}") from None
    source = found.get(CIFAR_ARCHIVE, folder)
    return BuiltinData(x_train, y_train, x_test, y_test, list(spec.class_names), source)


def _read_mnist_like(found: dict[str, Path]) -> tuple[np.ndarray, ...]:
    out = []
    for images_name, labels_name in (IDX_FILES[:2], IDX_FILES[2:]):
        images, labels = read_idx(found[images_name]), read_idx(found[labels_name])
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
            raise DataError(
                f"{found[images_name]}: expected uint8 images of shape (N, 28, 28), "
                f"got {images.dtype} {images.shape}"
            )
        if labels.dtype != np.uint8 or labels.ndim != 1 or len(labels) != len(images):
            raise DataError(
                f"{found[labels_name]}: expected {len(images)} uint8 labels, "
                f"got {labels.dtype} {labels.shape}"
            )
        if labels.size and labels.max() > 9:
            raise DataError(f"{found[labels_name]}: label {labels.max()} is not in 0..9")
        out += [images, labels.astype(np.int64)]
    return tuple(out)


def _read_cifar(found: dict[str, Path]) -> tuple[np.ndarray, ...]:
    if CIFAR_ARCHIVE in found:
        blobs = _cifar_members(found[CIFAR_ARCHIVE])
    else:
        blobs = {n: (p.read_bytes(), str(p)) for n, p in found.items()}
    parts = [_parse_cifar(*blobs[n]) for n in CIFAR_TRAIN]
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    x_test, y_test = _parse_cifar(*blobs[CIFAR_TEST])
    return x_train, y_train, x_test, y_test


def _cifar_members(archive: Path) -> dict[str, tuple[bytes, str]]:
    """Read the six batch files straight from the archive (nothing is extracted to disk)."""
    out = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for n in (*CIFAR_TRAIN, CIFAR_TEST):
                member_name = f"{CIFAR_FOLDER}/{n}"
                try:
                    member = tar.getmember(member_name)
                except KeyError:
                    raise DataError(f"{archive}: has no {member_name}") from None
                f = tar.extractfile(member) if member.isfile() else None
                if f is None:
                    raise DataError(f"{archive}: {member_name} is not a regular file")
                out[n] = (f.read(), f"{archive}:{member_name}")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DataError(f"{archive}: corrupt or truncated archive ({e})") from None
    return out


def _parse_cifar(data: bytes, origin: str) -> tuple[np.ndarray, np.ndarray]:
    if not data or len(data) % CIFAR_RECORD:
        raise DataError(
            f"{origin}: {len(data)} bytes is not a whole number of "
            f"{CIFAR_RECORD}-byte CIFAR records"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, CIFAR_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(f"{origin}: label {labels.max()} is not in 0..9")
    # Stored channel-major (3, 32, 32); the models are channels-last.
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels
