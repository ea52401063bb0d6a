"""Time a training epoch of the benchmark MLP and CNN: dlcli on the GPU, dlcli on the CPU, and
PyTorch on CUDA when it is installed with CUDA. benchmarks/gpu.sh runs this after the GPU tests.

The models are bench_core.py's (an MLP 784-256-128-10 and a small CNN), trained on
Fashion-MNIST's 60,000 training images at batch 128 with Adam(1e-3), as `dlcli train` runs them
(shuffling, accuracy, history, checkpoints). Each framework trains two epochs and the second is
timed (the first compiles kernels and warms the memory pools). The CPU epoch is timed on
--cpu-samples images and scaled to the full epoch. Without the dataset (--data-dir) the images
are random bytes of the same shape: the timings hold, the accuracies mean nothing.

Run: python benchmarks/bench_gpu.py [--models mlp,cnn] [--cpu-samples 6000] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from models import DLCLI_LAYERS, torch_models  # benchmarks/ is on sys.path as a script

BATCH, LR = 128, 1e-3
CONFIG = """name: gpu-bench-{model}
seed: 0
device: {device}
data: {{train: {npz}, batch_size: {batch}, normalize: scale, shuffle: true}}
model:
  input_shape: [28, 28, 1]
  layers:{layers}
loss: sparse_categorical_crossentropy
metrics: [accuracy]
optimizer: {{type: adam, learning_rate: {lr}}}
training: {{epochs: 2}}
"""


def load_data(data_dir: str) -> tuple[np.ndarray, np.ndarray, str]:
    from dlcli.data.idx import read_idx

    d = Path(data_dir)
    images, labels = d / "train-images-idx3-ubyte.gz", d / "train-labels-idx1-ubyte.gz"
    if images.is_file() and labels.is_file():
        x = np.ascontiguousarray(read_idx(images)[:, :, :, None])
        return x, read_idx(labels).astype(np.int64), "Fashion-MNIST"
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, (60_000, 28, 28, 1), dtype=np.uint8),
            rng.integers(0, 10, 60_000), "random bytes (no Fashion-MNIST in --data-dir)")


def time_dlcli(model: str, device: str, x: np.ndarray, y: np.ndarray, tmp: Path) -> dict:
    from dlcli.config import load_config_text
    from dlcli.core import set_num_threads
    from dlcli.train.trainer import Trainer

    npz = tmp / f"{model}-{device}-{len(x)}.npz"
    np.savez(npz, x=x, y=y)
    text = CONFIG.format(model=model, device=device, npz=npz, batch=BATCH,
                         layers=DLCLI_LAYERS[model], lr=LR)
    set_num_threads(None)
    trainer = Trainer(load_config_text(text), run_dir=tmp / f"run-{model}-{device}-{len(x)}")
    history = trainer.fit().history
    return {"seconds": history[-1]["seconds"], "accuracy": history[-1]["accuracy"],
            "samples": len(x)}


def time_torch(model: str, x: np.ndarray, y: np.ndarray) -> dict | str:
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA device"
    dev = torch.device("cuda")
    xt = torch.from_numpy(x).to(dev).float().div_(255.0).permute(0, 3, 1, 2).contiguous()
    yt = torch.from_numpy(y).to(dev)
    nn = torch.nn
    net = torch_models(torch)[model]
    if model == "mlp":
        net = nn.Sequential(nn.Flatten(), net)  # the images come as (N, 1, 28, 28)
    net = net.to(dev).train()
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    n, seconds, accuracy = len(xt), 0.0, 0.0
    for _ in range(2):  # the second epoch is timed, as dlcli's
        torch.cuda.synchronize()
        start = time.perf_counter()
        order = torch.randperm(n, device=dev)
        correct = torch.zeros((), device=dev)
        for i in range(0, n, BATCH):
            idx = order[i:i + BATCH]
            out = net(xt[idx])
            loss = loss_fn(out, yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            correct += (out.argmax(1) == yt[idx]).sum()
        accuracy = float(correct) / n
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "accuracy": accuracy, "samples": n, "torch": torch.__version__}


def table(rows: list[dict[str, Any]]) -> str:
    head = ("model", "dlcli GPU s", "dlcli CPU s", "GPU speedup", "torch CUDA s", "dlcli/torch",
            "GPU acc", "CPU acc")
    lines = [head]
    for r in rows:
        g, c, t = r["gpu"], r["cpu"], r["torch"]
        tsec = t["seconds"] if isinstance(t, dict) else None
        lines.append((
            r["model"], f"{g['seconds']:.2f}", f"{c['seconds']:.1f}" + ("*" if c["scaled"] else ""),
            f"{c['seconds'] / g['seconds']:.1f}x",
            "-" if tsec is None else f"{tsec:.2f}",
            "-" if tsec is None else f"{g['seconds'] / tsec:.2f}x",
            f"{g['accuracy']:.4f}", f"{c['accuracy']:.4f}"))
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    out = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
           for row in lines]
    out.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--cpu-samples", type=int, default=6000,
                        help="images the CPU epoch is timed on (scaled to the full epoch)")
    parser.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--json", metavar="FILE", help="also write the measurements here")
    args = parser.parse_args()
    from dlcli.core.backend import gpu_available

    if not gpu_available():
        print("no GPU: cupy is missing or sees no CUDA device", file=sys.stderr)
        return 2
    x, y, source = load_data(args.data_dir)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for model in args.models.split(","):
            print(f"timing {model} ...", flush=True)
            gpu = time_dlcli(model, "gpu", x, y, tmp)
            k = min(args.cpu_samples, len(x))
            cpu = time_dlcli(model, "cpu", x[:k], y[:k], tmp)
            cpu["scaled"] = k < len(x)
            cpu["seconds"] *= len(x) / k
            rows.append({"model": model, "gpu": gpu, "cpu": cpu, "torch": time_torch(model, x, y)})
    print(f"\none epoch of {len(x):,} images ({source}), batch {BATCH}, the second of two:")
    print(table(rows))
    if any(r["cpu"]["scaled"] for r in rows):
        print(f"* timed on {args.cpu_samples:,} images and scaled to the epoch")
    for r in rows:
        if isinstance(r["torch"], str):
            print(f"no PyTorch column for {r['model']}: {r['torch']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"source": source, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
