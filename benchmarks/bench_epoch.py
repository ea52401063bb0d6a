"""Time whole training epochs of dlcli, PyTorch and Keras 3 (torch backend) on Fashion-MNIST.

dlcli runs through the `dlcli train` path: a YAML config read by load_config, the Trainer with
the CLI's progress reporter, shuffling, metrics, checkpoints and history in a run directory.
PyTorch runs an ordinary loop over shuffled tensors (no DataLoader) that also counts accuracy
and prints a line per epoch; Keras runs model.fit(verbose=2). Same models as bench_core.py (the
MLP 784-256-128-10 and the small CNN), batch 128, Adam(1e-3), float32, --threads threads
pinned to the same cores. Each framework trains in a subprocess of its own per repetition
(so peak RSS and page faults are its own), and the repetitions interleave the frameworks.

Reported per model and framework: median epoch seconds (an epoch's whole cycle: from the
start of one epoch to the start of the next, or to the end of training after the last), samples
per second, the sum of the step times inside the same epochs (forward, loss, backward,
optimizer update, timed in the loop itself), peak RSS (ru_maxrss), minor/major page faults per
epoch, and the GEMM bound: the model's forward, input-gradient and weight-gradient GEMMs
(convolutions as their im2col GEMMs; no input gradient for the first layer) timed with numpy's
sgemm on --threads threads, times the batches in an epoch.

Run (OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE slow OpenBLAS down, so unset them for benchmarks):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_epoch.py
Options: --epochs, --repeats, --models mlp,cnn, --frameworks dlcli,torch,keras, --threads,
--quick (2,048 samples, for a smoke run), --data-dir, --json FILE (every measurement).
Needs the bench extra (pip install -e '.[bench]': torch, keras) and Fashion-MNIST
(apt-get install dataset-fashion-mnist). Timings on a shared machine are noisy: compare the
frameworks from the same run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from models import DLCLI_LAYERS, torch_models  # benchmarks/ is on sys.path as a script

BATCH = 128
LR = 1e-3
FASHION_DIR = "/usr/share/datasets/fashion-mnist"
FRAMEWORKS = ("dlcli", "torch", "keras")
MODELS = ("mlp", "cnn")

DLCLI_CONFIG = """name: bench-{model}
seed: 0
data: {{train: {npz}, batch_size: {batch}, normalize: scale, shuffle: true}}
model:
  input_shape: [28, 28, 1]
  layers:{layers}
loss: categorical_crossentropy
metrics: [accuracy]
optimizer: {{type: adam, learning_rate: {lr}}}
training: {{epochs: {epochs}}}
"""

# (layer, M, K, N, first) of each layer's forward GEMM (M x K) @ (K x N) for a batch of B;
# a convolution is its im2col GEMM: M = output positions, K = kernel height * width * channels
GEMM_LAYERS = {
    "mlp": lambda b: [("dense1", b, 784, 256, True), ("dense2", b, 256, 128, False),
                      ("dense3", b, 128, 10, False)],
    "cnn": lambda b: [("conv1", b * 28 * 28, 9 * 1, 32, True),
                      ("conv2", b * 14 * 14, 9 * 32, 64, False),
                      ("dense1", b, 64 * 7 * 7, 128, False), ("dense2", b, 128, 10, False)],
}  # fmt: skip


# -- inside each worker process ---------------------------------------------------------------


class EpochClock:
    """Epoch starts, per-step times and page faults, recorded from inside a training loop."""

    def __init__(self) -> None:
        self.begins: list[float] = []
        self.steps: list[float] = []  # summed step seconds, one entry per epoch
        self.n_steps = 0
        self.end: float | None = None
        self._t0: float | None = None
        self._usage: list[Any] = []

    def epoch_begin(self) -> None:
        if not self.begins:
            self._usage.append(resource.getrusage(resource.RUSAGE_SELF))
        self.begins.append(time.perf_counter())
        self.steps.append(0.0)

    def step_begin(self) -> None:
        self._t0 = time.perf_counter()

    def step_end(self) -> None:
        if self._t0 is not None and self.steps:
            self.steps[-1] += time.perf_counter() - self._t0
            self.n_steps += 1
        self._t0 = None

    def train_end(self) -> None:
        if self.end is None:
            self.end = time.perf_counter()
            self._usage.append(resource.getrusage(resource.RUSAGE_SELF))

    def result(self) -> dict[str, Any]:
        assert self.end is not None and self.begins, "the training loop never ran"
        bounds = [*self.begins, self.end]
        first, last = self._usage
        return {
            "epochs": [b - a for a, b in zip(bounds, bounds[1:], strict=False)],
            "steps": self.steps if self.n_steps else None,
            "maxrss_mib": _maxrss_mib(),
            "minflt": last.ru_minflt - first.ru_minflt,
            "majflt": last.ru_majflt - first.ru_majflt,
        }


def _maxrss_mib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


def _pin(cores: list[int]) -> None:
    """Run on these cores only: dlcli's thread count follows them, as `dlcli train` does."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)


def _load_npz(path: str) -> tuple[Any, Any]:
    import numpy as np

    with np.load(path) as f:
        return f["x"], f["y"]


def run_dlcli(args: argparse.Namespace) -> dict[str, Any]:
    """`dlcli train CONFIG --run-dir DIR`, as cli/train.py builds it, with clocks attached."""
    from dlcli.cli import console
    from dlcli.config import load_config
    from dlcli.train.trainer import Trainer

    clock = EpochClock()

    class Reporter:
        """The CLI's reporter, starting the epoch clock first."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def epoch_begin(self, epoch: int, epochs: int, n_batches: int) -> None:
            clock.epoch_begin()
            self.inner.epoch_begin(epoch, epochs, n_batches)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    class TrainEnd:
        """A trainer hook: training is over (after the last epoch's checkpoints)."""

        def on_train_end(self, trainer: Any, status: str) -> None:
            clock.train_end()

    class TimedLoss:
        """The trainer's loss; a training call starts a step (the forward pass)."""

        def __init__(self, loss: Any) -> None:
            self.loss = loss

        def __call__(self, *a: Any, **kw: Any) -> Any:
            if kw.get("training", len(a) > 3 and a[3]):
                clock.step_begin()
            return self.loss(*a, **kw)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.loss, name)

    cfg = load_config(args.config, [])
    reporter = Reporter(console.TrainProgress())
    trainer = Trainer(cfg, run_dir=args.run_dir, reporter=reporter, hooks=[TrainEnd()])
    # a step ends when the optimizer has updated the weights and cleared the gradients
    trainer.loss = TimedLoss(trainer.loss)
    zero_grad = trainer.optimizer.zero_grad

    def timed_zero_grad(*a: Any, **kw: Any) -> Any:
        out = zero_grad(*a, **kw)
        clock.step_end()
        return out

    trainer.optimizer.zero_grad = timed_zero_grad
    trainer.fit()
    clock.train_end()  # in case the hook was not called
    from dlcli.core import get_num_threads

    return {**clock.result(), "threads": get_num_threads()}


def run_torch(args: argparse.Namespace) -> dict[str, Any]:
    """An ordinary PyTorch loop: shuffled index tensors, no DataLoader."""
    import torch

    torch.set_num_threads(args.threads)
    x, y = _load_npz(args.npz)
    x = torch.from_numpy(x).float().div_(255.0).permute(0, 3, 1, 2).contiguous()  # NCHW
    y = torch.from_numpy(y).long()
    nn = torch.nn
    model = torch_models(torch)[args.model]
    if args.model == "mlp":
        model = nn.Sequential(nn.Flatten(), model)  # the images come as (N, 1, 28, 28)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(0)
    clock, n = EpochClock(), len(x)
    model.train()
    for epoch in range(args.epochs):
        clock.epoch_begin()
        order = torch.randperm(n, generator=gen)
        total, correct = 0.0, 0
        for start in range(0, n, BATCH):
            idx = order[start:start + BATCH]
            xb, yb = x[idx], y[idx]
            clock.step_begin()
            opt.zero_grad(set_to_none=True)
            out = model(xb)
            loss = loss_fn(out, yb)
            loss.backward()
            opt.step()
            clock.step_end()
            total += loss.item() * len(idx)
            correct += int((out.argmax(1) == yb).sum())
        print(f"epoch {epoch + 1}/{args.epochs}: loss {total / n:.4f} accuracy {correct / n:.4f}",
              flush=True)
    clock.train_end()
    return {**clock.result(), "threads": torch.get_num_threads(), "torch": torch.__version__}


def run_keras(args: argparse.Namespace) -> dict[str, Any]:
    """Keras 3 model.fit on its torch backend (KERAS_BACKEND=torch set by the parent)."""
    import torch

    torch.set_num_threads(args.threads)
    import keras

    assert keras.backend.backend() == "torch", keras.backend.backend()
    keras.utils.set_random_seed(0)
    x, y = _load_npz(args.npz)
    x = x.astype("float32") / 255.0
    layers = keras.layers
    if args.model == "mlp":
        body = [layers.Flatten(), layers.Dense(256, activation="relu"),
                layers.Dense(128, activation="relu"), layers.Dense(10)]  # fmt: skip
    else:
        body = [layers.Conv2D(32, 3, padding="same"), layers.BatchNormalization(),
                layers.ReLU(), layers.MaxPooling2D(2),
                layers.Conv2D(64, 3, padding="same"), layers.BatchNormalization(),
                layers.ReLU(), layers.MaxPooling2D(2),
                layers.Flatten(), layers.Dense(128, activation="relu"),
                layers.Dense(10)]  # fmt: skip
    model = keras.Sequential([keras.Input((28, 28, 1)), *body])
    model.compile(optimizer=keras.optimizers.Adam(LR), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    clock = EpochClock()

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            clock.epoch_begin()

        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            clock.step_begin()

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            clock.step_end()

        def on_train_end(self, logs: Any = None) -> None:
            clock.train_end()

    model.fit(x, y, batch_size=BATCH, epochs=args.epochs, shuffle=True, verbose=2,
              callbacks=[Clock()])
    return {**clock.result(), "threads": torch.get_num_threads(), "keras": keras.__version__}


def run_gemm(args: argparse.Namespace) -> dict[str, Any]:
    """The model's GEMMs for one batch of BATCH, each timed with numpy's sgemm."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    budget = 0.02 if args.quick else 0.2  # seconds of timing per GEMM
    rows = []
    with threadpool_limits(args.threads, user_api="blas"):
        for layer, m, k, n, first in GEMM_LAYERS[args.model](BATCH):
            x = rng.standard_normal((m, k), dtype=np.float32)
            w = rng.standard_normal((k, n), dtype=np.float32)
            gy = rng.standard_normal((m, n), dtype=np.float32)
            gemms = [("forward", x, w, (m, n)), ("weight-grad", x.T, gy, (k, n))]
            if not first:  # nobody computes the gradient of the input data
                gemms.insert(1, ("input-grad", gy, w.T, (m, k)))
            for kind, a, b, shape in gemms:
                out = np.empty(shape, np.float32)
                np.matmul(a, b, out=out)
                times: list[float] = []
                while len(times) < 5 or sum(times) < budget:
                    t = time.perf_counter()
                    np.matmul(a, b, out=out)
                    times.append(time.perf_counter() - t)
                s = statistics.median(times)
                rows.append({"layer": layer, "kind": kind, "shape": [a.shape[0], a.shape[1],
                             b.shape[1]], "seconds": s, "gflops": 2 * m * k * n / s / 1e9})
    step = sum(r["seconds"] for r in rows)
    flops = sum(2 * r["shape"][0] * r["shape"][1] * r["shape"][2] for r in rows)
    return {"gemms": rows, "step_seconds": step, "gflops": flops / step / 1e9}


WORKERS = {"dlcli": run_dlcli, "torch": run_torch, "keras": run_keras, "gemm": run_gemm}


def worker_main(args: argparse.Namespace) -> None:
    _pin([int(c) for c in args.cores.split(",")])
    result = WORKERS[args.worker](args)
    Path(args.out).write_text(json.dumps(result))


# -- the parent: data, interleaved runs, the table ------------------------------------------------


def load_fashion(data_dir: str, n: int | None) -> tuple[Any, Any]:
    """The Fashion-MNIST training set as uint8 (N, 28, 28, 1) and int64 labels."""
    import numpy as np

    from dlcli.data.idx import read_idx

    d = Path(data_dir)
    images, labels = d / "train-images-idx3-ubyte.gz", d / "train-labels-idx1-ubyte.gz"
    if not (images.is_file() and labels.is_file()):
        sys.exit(f"Fashion-MNIST is not in {d} (want {images.name} and {labels.name}).\n"
                 "Get it with: apt-get install dataset-fashion-mnist (or `make data`), "
                 "or point --data-dir at a folder that holds the gzip IDX files.")
    x = read_idx(images)[:n, :, :, None]
    y = read_idx(labels)[:n].astype(np.int64)
    return np.ascontiguousarray(x), y


def missing_reason(framework: str) -> str | None:
    """Why a framework cannot run here, or None."""
    need = {"dlcli": [], "torch": ["torch"], "keras": ["torch", "keras"]}[framework]
    gone = [m for m in need if importlib.util.find_spec(m) is None]
    if gone:
        return f"{', '.join(gone)} not installed (pip install -e '.[bench]')"
    return None


def run_job(job: str, model: str, args: argparse.Namespace, tmp: Path, cores: list[int],
            tag: str) -> dict[str, Any]:
    """One subprocess: a framework's epochs, or the GEMM timings."""
    out = tmp / f"{tag}.json"
    cmd = [sys.executable, __file__, "--worker", job, "--model", model, "--npz",
           str(tmp / "train.npz"), "--config", str(tmp / f"{model}.yaml"),
           "--run-dir", str(tmp / f"run-{tag}"), "--epochs", str(args.epochs),
           "--threads", str(args.threads), "--cores", ",".join(map(str, cores)), "--out", str(out)]
    if args.quick:
        cmd.append("--quick")
    env = dict(os.environ)
    if job == "keras":
        env["KERAS_BACKEND"] = "torch"  # read when keras is first imported
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0 or not out.exists():
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"exit code {done.returncode}: {tail}")
    return json.loads(out.read_text())


def summarize(runs: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """Medians over every epoch of every repetition (RSS and faults: over repetitions)."""
    epochs = [e for r in runs for e in r["epochs"]]
    steps = [s for r in runs if r["steps"] for s in r["steps"]]
    epoch = statistics.median(epochs)
    return {
        "epoch": epoch, "samples_per_s": n / epoch,
        "steps": statistics.median(steps) if steps else None,
        "rss": statistics.median(r["maxrss_mib"] for r in runs),
        "minflt": statistics.median(r["minflt"] / len(r["epochs"]) for r in runs),
        "majflt": statistics.median(r["majflt"] / len(r["epochs"]) for r in runs),
        "threads": runs[0].get("threads"),
    }  # fmt: skip


def _median_gemms(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each GEMM's median time over the repetitions."""
    out = []
    for i, g in enumerate(runs[0]["gemms"]):
        s = statistics.median(r["gemms"][i]["seconds"] for r in runs)
        m, k, n = g["shape"]
        out.append({**g, "seconds": s, "gflops": 2 * m * k * n / s / 1e9})
    return out


def _f(v: float | None, fmt: str) -> str:
    return "–" if v is None else format(v, fmt)


def table(results: dict[str, dict[str, Any]], gemm: dict[str, Any], frameworks: list[str]) -> str:
    """One Markdown table: every framework, the GEMM bound, and dlcli's ratios to the others."""
    head = ["model", "run", "epoch s", "samples/s", "step sum s", "epoch/steps", "epoch/GEMM",
            "peak RSS MiB", "minor faults/epoch", "major faults/epoch"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def row(*cells: str) -> None:
        lines.append("| " + " | ".join(cells) + " |")

    for model, per in results.items():
        bound = gemm.get(model)
        for fw in frameworks:
            s = per.get(fw)
            if s is None:
                continue
            ratio_steps = s["epoch"] / s["steps"] if s["steps"] else None
            ratio_gemm = s["epoch"] / bound["epoch"] if bound else None
            row(model, fw, _f(s["epoch"], ".2f"), _f(s["samples_per_s"], ",.0f"),
                _f(s["steps"], ".2f"), _f(ratio_steps, ".2f"), _f(ratio_gemm, ".2f"),
                _f(s["rss"], ",.0f"), _f(s["minflt"], ",.0f"), _f(s["majflt"], ",.0f"))
        if bound:
            row(model, f"GEMM bound ({bound['gflops']:.1f} GFLOP/s)", _f(bound["epoch"], ".2f"),
                _f(bound["samples_per_s"], ",.0f"), "–", "–", "1.00", "–", "–", "–")
        d = per.get("dlcli")
        for other in ("torch", "keras"):
            o = per.get(other)
            if d is None or o is None:
                continue

            def r(key: str, d: dict = d, o: dict = o) -> str:
                return "–" if not d[key] or not o[key] else f"{d[key] / o[key]:.2f}"

            row(model, f"dlcli/{other}", r("epoch"), "–", r("steps"), "–", "–", r("rss"),
                r("minflt"), r("majflt"))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run (default 2)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="runs per framework and model, interleaved (default 3; --quick 1)")
    parser.add_argument("--models", default="mlp,cnn", help="comma-separated: mlp,cnn")
    parser.add_argument("--frameworks", default="dlcli,torch,keras",
                        help="comma-separated: dlcli,torch,keras")
    parser.add_argument("--threads", type=int, default=2, help="threads for every framework")
    parser.add_argument("--quick", action="store_true", help="2,048 samples: a smoke run")
    parser.add_argument("--data-dir", default=FASHION_DIR, help="the Fashion-MNIST IDX files")
    parser.add_argument("--json", metavar="FILE", help="also write every measurement here")
    for name in ("worker", "model", "npz", "config", "run-dir", "cores", "out"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)  # a worker's own arguments
    args = parser.parse_args()
    if args.worker:
        worker_main(args)
        return
    args.epochs = args.epochs or 2
    args.repeats = args.repeats or (1 if args.quick else 3)
    models = [m for m in args.models.split(",") if m]
    frameworks = [f for f in args.frameworks.split(",") if f]
    bad = [m for m in models if m not in MODELS] + [f for f in frameworks if f not in FRAMEWORKS]
    if bad or args.epochs < 1 or args.repeats < 1 or args.threads < 1:
        parser.error(f"unknown model or framework: {', '.join(bad)}" if bad else
                     "--epochs, --repeats and --threads must be at least 1")
    for fw in list(frameworks):
        reason = missing_reason(fw)
        if reason:
            print(f"{fw}: skipped, {reason}")
            frameworks.remove(fw)
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    cores = available[:args.threads] if len(available) >= args.threads else available
    if len(available) < args.threads:
        print(f"warning: {args.threads} threads asked for, {len(available)} cores available")

    import numpy as np
    from bench_core import blas_info  # benchmarks/ is on sys.path when run as a script

    x, y = load_fashion(args.data_dir, 2048 if args.quick else None)
    n = len(x)
    blas, _ = blas_info()
    print(f"CPU: {_cpu_name()}; BLAS: {blas}; {args.threads} threads on cores {cores}; "
          f"numpy {np.__version__}; python {platform.python_version()}")
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if var in os.environ:
            print(f"note: {var}={os.environ[var]} is set (run with env -u {var} to unset it)")
    print(f"Fashion-MNIST: {n:,} training samples, batch {BATCH}, Adam({LR}), float32; "
          f"{args.epochs} epochs x {args.repeats} repetitions, interleaved")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > 0.5:
        print(f"warning: load average {load:.1f}: other processes share the cores, and "
              "multi-threaded steps that wait on each other (BLAS, OpenMP) suffer most")

    raw: dict[str, dict[str, list[dict[str, Any]]]] = {m: {} for m in models}
    with tempfile.TemporaryDirectory(prefix="bench-epoch-") as tmpdir:
        tmp = Path(tmpdir)
        np.savez(tmp / "train.npz", x=x, y=y)
        for model in models:
            (tmp / f"{model}.yaml").write_text(DLCLI_CONFIG.format(
                model=model, npz=json.dumps(str(tmp / "train.npz")), batch=BATCH, lr=LR,
                layers=DLCLI_LAYERS[model], epochs=args.epochs))
        failed: set[str] = set()
        for rep in range(args.repeats):
            order = frameworks[rep % len(frameworks):] + frameworks[:rep % len(frameworks)]
            for model in models:
                for job in ["gemm", *order]:
                    if job in failed:
                        continue
                    tag = f"{model}-{job}-{rep}"
                    try:
                        res = run_job(job, model, args, tmp, cores, tag)
                    except RuntimeError as e:
                        print(f"{job} {model}: failed ({e}); left out from here on")
                        failed.add(job)
                        continue
                    raw[model].setdefault(job, []).append(res)
                    shown = (f"{res['step_seconds'] * 1e3:.1f} ms of GEMMs per step"
                             if job == "gemm" else
                             "epochs " + ", ".join(f"{e:.2f}" for e in res["epochs"]) + " s")
                    print(f"  repetition {rep + 1}/{args.repeats} {model} {job}: {shown}",
                          file=sys.stderr, flush=True)

    results: dict[str, dict[str, Any]] = {}
    gemm: dict[str, Any] = {}
    batches = n / BATCH  # the last, partial batch counts by its share of samples
    for model, per in raw.items():
        results[model] = {fw: summarize(runs, n) for fw, runs in per.items() if fw != "gemm"}
        if per.get("gemm"):
            step = statistics.median(r["step_seconds"] for r in per["gemm"])
            gemm[model] = {"epoch": step * batches, "samples_per_s": BATCH / step,
                           "gflops": statistics.median(r["gflops"] for r in per["gemm"])}
        for fw in ("dlcli", "torch", "keras"):
            s = results[model].get(fw)
            if s and s["steps"] is None:
                print(f"note: {model} {fw}: no step times (the loop was not instrumented)")
    print()
    print(table(results, gemm, frameworks))
    for model, per in raw.items():
        if per.get("gemm"):
            print(f"{model} GEMMs, ms per batch of {BATCH} (GFLOP/s): " + ", ".join(
                f"{g['layer']} {g['kind']} {g['seconds'] * 1e3:.2f} ({g['gflops']:.0f})"
                for g in _median_gemms(per["gemm"])))
    print("\nepoch: one epoch's whole cycle (shuffling, batches, steps, metrics, progress, "
          "checkpoints); step sum: forward+loss+backward+update timed inside that loop; "
          "ratios below 1 favour dlcli.")
    if args.json:
        Path(args.json).write_text(json.dumps({"samples": n, "batch": BATCH, "epochs": args.epochs,
                                               "repeats": args.repeats, "threads": args.threads,
                                               "blas": blas, "summary": results, "gemm": gemm,
                                               "runs": raw}, indent=2))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
