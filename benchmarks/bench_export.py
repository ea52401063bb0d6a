"""An exported model against its checkpoint: accuracy on raw test images, agreement, throughput.

Exports CHECKPOINT to ONNX (verified), then runs the raw test split of its built-in dataset
(uint8 pixels as stored, no preprocessing by the caller) through onnxruntime and through dlcli's
own inference path, and prints test accuracy of each, the max abs probability difference, the
file size and inference throughput (images/s, median of --repeats passes over the test set,
batch --batch-size, --threads threads for both).

Run (OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE slow OpenBLAS down, so unset them for benchmarks):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_export.py \
        runs/<run>/checkpoints/best [--repeats 5] [--batch-size 256] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import blas_info  # noqa: E402

from dlcli.core import set_num_threads  # noqa: E402
from dlcli.data.builtin import load_builtin  # noqa: E402
from dlcli.export import export_checkpoint  # noqa: E402
from dlcli.predict import CheckpointModel, OnnxModel  # noqa: E402


def timed(fn, x: np.ndarray, repeats: int) -> tuple[float, np.ndarray]:
    """Median images/s over `repeats` passes, and the outputs of the last pass."""
    rates, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(x)
        rates.append(len(x) / (time.perf_counter() - start))
    return statistics.median(rates), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    set_num_threads(args.threads)
    ours = CheckpointModel(args.checkpoint)
    dataset = ours.cfg.data.dataset
    if dataset is None:
        sys.exit("this benchmark needs a checkpoint trained on a built-in dataset")
    data = load_builtin(str(dataset))
    x = data.x_test.reshape(len(data.x_test), *ours.info.input_shape)  # raw uint8 pixels
    y = data.y_test
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        report = export_checkpoint(args.checkpoint, path)
        theirs = OnnxModel(path, threads=args.threads)
        size = path.stat().st_size
        rate_ort, p_ort = timed(lambda a: theirs.predict(a, args.batch_size), x, args.repeats)
    rate_dl, p_dl = timed(lambda a: ours.predict(a, args.batch_size), x, args.repeats)
    result = {
        "blas": blas_info()[0],
        "threads": args.threads,
        "test_images": len(x),
        "accuracy_dlcli": float(np.mean(p_dl.argmax(1) == y)),
        "accuracy_onnxruntime": float(np.mean(p_ort.argmax(1) == y)),
        "max_abs_prob_diff": float(np.max(np.abs(p_dl.astype(np.float64) - p_ort))),
        "predictions_equal": float(np.mean(p_dl.argmax(1) == p_ort.argmax(1))),
        "export_check": report.verification.describe(),
        "onnx_bytes": size,
        "images_per_s_dlcli": rate_dl,
        "images_per_s_onnxruntime": rate_ort,
        "ratio_onnxruntime_over_dlcli": rate_ort / rate_dl,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        print(f"{key:30} {value:,.6g}" if isinstance(value, float) else f"{key:30} {value}")


if __name__ == "__main__":
    main()
