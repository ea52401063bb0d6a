"""Downloads into the cache: stream to a temp file, verify the checksum, then rename into place.

A file that fails its checksum or is cut off never reaches its final name, so the cache only
ever holds complete, verified files.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from dlcli.errors import DataError

ProgressFn = Callable[[int, int | None], None]
"""progress(bytes_done, bytes_total_or_None), called after each chunk of one file."""

CHUNK = 1 << 20
TIMEOUT_S = 60.0


def open_url(url: str, timeout: float = TIMEOUT_S) -> tuple[BinaryIO, int | None]:
    """Open `url` (http, https or file) for reading; returns the stream and its size if known.

    Tests replace this function to simulate the network.
    """
    request = urllib.request.Request(url, headers={"User-Agent": "dlcli"})
    response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - fixed dataset URLs
    length = response.headers.get("Content-Length")
    return response, int(length) if length and length.strip().isdigit() else None


def file_digest(path: str | os.PathLike[str], algorithm: str) -> str:
    """Hex digest of a file ("md5" or "sha256"), read in chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def download_file(
    urls: Sequence[str],
    dest: str | os.PathLike[str],
    *,
    md5: str | None = None,
    sha256: str | None = None,
    progress: ProgressFn | None = None,
) -> Path:
    """Download the first of `urls` that works to `dest`, verifying the checksum if given.

    Args:
        urls: mirrors of the same file, tried in order.
        dest: final path; its folder is created. A temp file beside it is renamed into place
            only after the whole file arrived and matched the checksum.
        md5, sha256: expected hex digests (either or both).
        progress: called as progress(bytes_done, bytes_total_or_None) while downloading.
    Returns:
        `dest` as a Path.
    Raises:
        DataError: every URL failed; the message lists each URL and why.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in urls:
        try:
            _fetch(url, dest, md5=md5, sha256=sha256, progress=progress)
            return dest
        except (OSError, ValueError, http.client.HTTPException, DataError) as e:
            # URLError and HTTPError are OSErrors; ValueError is an unknown URL scheme.
            failures.append(f"{url}: {e}")
    raise DataError(f"could not download {dest.name}:\n  " + "\n  ".join(failures))


def _fetch(
    url: str, dest: Path, *, md5: str | None, sha256: str | None, progress: ProgressFn | None
) -> None:
    hashers = {name: hashlib.new(name) for name, want in (("md5", md5), ("sha256", sha256)) if want}
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            stream, total = open_url(url)
            done = 0
            with stream:
                while chunk := stream.read(CHUNK):
                    out.write(chunk)
                    for h in hashers.values():
                        h.update(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
        if total is not None and done != total:
            raise DataError(f"transfer cut off after {done} of {total} bytes")
        for name, want in (("md5", md5), ("sha256", sha256)):
            if want:
                got = hashers[name].hexdigest()
                if got.lower() != want.lower():
                    raise DataError(f"checksum mismatch: expected {name} {want}, got {got}")
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
