"""Cost of each augmentation layer: forward time of one training batch, and per epoch.

Runs every augmentation layer in training mode on float32 batches of --batch-size images
(default 128 of 28x28x1, Fashion-MNIST's shape) and prints the median milliseconds per batch
and the seconds it adds to an epoch of --samples images (default 54,000, the Fashion-MNIST
configs' training split). Backward is not timed: augmentation sits at the input, where no
gradient is taken.

Run (OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE slow OpenBLAS down, so unset them for benchmarks):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_augment.py
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import numpy as np

from dlcli.core import no_grad
from dlcli.core.tensor import Tensor
from dlcli.nn.layers.augment import (
    GaussianNoise,
    RandomBrightness,
    RandomContrast,
    RandomCrop,
    RandomFlip,
    RandomRotation,
    RandomTranslation,
    RandomZoom,
)
from dlcli.nn.sequential import Sequential


def layers(h: int, w: int) -> dict[str, object]:
    return {
        "RandomFlip(horizontal)": RandomFlip("horizontal"),
        "RandomTranslation(0.1, 0.1)": RandomTranslation(0.1, 0.1),
        "RandomRotation(0.1)": RandomRotation(0.1),
        "RandomZoom(0.1)": RandomZoom(0.1),
        "RandomCrop(h-4, w-4)": RandomCrop(h - 4, w - 4),
        "RandomContrast(0.2)": RandomContrast(0.2, value_range=(0, 1)),
        "RandomBrightness(0.2)": RandomBrightness(0.2, value_range=(0, 1)),
        "GaussianNoise(0.1)": GaussianNoise(0.1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--shape", type=int, nargs=3, default=(28, 28, 1))
    parser.add_argument("--samples", type=int, default=54_000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    h, w, c = args.shape
    x = np.random.default_rng(0).random((args.batch_size, h, w, c)).astype(np.float32)
    batches = math.ceil(args.samples / args.batch_size)
    out = {}
    for name, layer in layers(h, w).items():
        model = Sequential([layer], (h, w, c)).build(0)
        times = []
        with no_grad():
            for _ in range(args.repeats + 3):
                start = time.perf_counter()
                model(Tensor(x), training=True)
                times.append(time.perf_counter() - start)
        ms = statistics.median(times[3:]) * 1e3
        out[name] = {"ms_per_batch": ms, "s_per_epoch": ms * batches / 1e3}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"batch {args.batch_size} x {h}x{w}x{c}, {batches} batches per epoch")
    for name, r in out.items():
        print(f"{name:30} {r['ms_per_batch']:8.2f} ms/batch {r['s_per_epoch']:7.2f} s/epoch")


if __name__ == "__main__":
    main()
