"""Time one training step (forward + loss + backward) of dlcli against PyTorch on the CPU.

Two models on a float32 batch: an MLP 784-256-128-10 and a small CNN
(Conv2D(32,3,same)-BN-ReLU-MaxPool-Conv2D(64,3,same)-BN-ReLU-MaxPool-Flatten-Dense(128)-Dense(10))
on 28x28x1, both with softmax cross-entropy. dlcli runs its ops on --threads threads
(dlcli.core.set_num_threads, as `dlcli train` does; BLAS is then held to one thread and dlcli
splits the GEMMs itself); PyTorch runs with the same thread count and BLAS's own limits.

Run (OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE slow OpenBLAS down, so unset them for benchmarks):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_core.py [--repeats 20]
Options: --threads (default: every core), --batch-size, --warmup, --impl {auto,layers,ops},
--no-torch, --json, and --no-malloc-tune (by default glibc keeps freed memory, as `dlcli train`
sets it, so steps stop page-faulting; it applies to both libraries).
Timings on a shared machine are noisy: compare dlcli and torch from the same run.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
from models import torch_models  # benchmarks/ is on sys.path when run as a script

from dlcli.core import get_num_threads, ops, set_num_threads
from dlcli.core.backend import tune_host_allocator
from dlcli.core.tensor import Tensor


def blas_info() -> tuple[str, int]:
    """BLAS library, kernel and thread count as threadpoolctl sees them."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (pip install threadpoolctl)", 1
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            kernel = pool.get("architecture") or "?"
            name = f"{pool['internal_api']} {pool.get('version')} kernel={kernel}"
            return name, pool["num_threads"]
    return "no BLAS found", 1


# -- dlcli models -------------------------------------------------------------------------------


def dlcli_models_from_layers() -> dict[str, Any]:
    """The two models built from dlcli.nn layers (raises if the layers are missing or broken)."""
    from dlcli.nn.layers import BatchNorm, Conv2D, Dense, Flatten, MaxPool2D
    from dlcli.nn.sequential import Sequential

    mlp = Sequential([Dense(256, "relu"), Dense(128, "relu"), Dense(10)], (784,)).build(0)
    cnn = Sequential(
        [Conv2D(32, 3, padding="same"), BatchNorm(), _Relu(), MaxPool2D(2),
         Conv2D(64, 3, padding="same"), BatchNorm(), _Relu(), MaxPool2D(2),
         Flatten(), Dense(128, "relu"), Dense(10)],
        (28, 28, 1),
    ).build(0)  # fmt: skip
    return {
        "mlp": (lambda x: mlp(x, training=True), mlp.trainable_weights),
        "cnn": (lambda x: cnn(x, training=True), cnn.trainable_weights),
    }


def _Relu() -> Any:  # noqa: N802 - reads like a layer class in the list above
    from dlcli.nn.layers import Activation

    return Activation("relu")


def dlcli_models_from_ops() -> dict[str, Any]:
    """The same two models written directly with dlcli ops and hand-made weights."""
    rng = np.random.default_rng(0)

    def w(*shape: int) -> Tensor:
        fan_in = int(np.prod(shape[:-1]))
        return Tensor((rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32), True)

    def z(n: int, value: float = 0.0) -> Tensor:
        return Tensor(np.full(n, value, np.float32), requires_grad=True)

    m = [w(784, 256), z(256), w(256, 128), z(128), w(128, 10), z(10)]

    def mlp(x: Tensor) -> Tensor:
        h = ops.relu(x @ m[0] + m[1])
        h = ops.relu(h @ m[2] + m[3])
        return h @ m[4] + m[5]

    c = [w(3, 3, 1, 32), z(32), z(32, 1.0), z(32), w(3, 3, 32, 64), z(64), z(64, 1.0), z(64),
         w(3136, 128), z(128), w(128, 10), z(10)]  # fmt: skip
    stats = [np.zeros(32, np.float32), np.ones(32, np.float32),
             np.zeros(64, np.float32), np.ones(64, np.float32)]  # fmt: skip

    def cnn(x: Tensor) -> Tensor:
        h = ops.conv2d(x, c[0], c[1], padding="same")
        h = ops.max_pool2d(ops.relu(ops.batch_norm(h, c[2], c[3], *stats[:2], True)), 2)
        h = ops.conv2d(h, c[4], c[5], padding="same")
        h = ops.max_pool2d(ops.relu(ops.batch_norm(h, c[6], c[7], *stats[2:], True)), 2)
        h = ops.relu(ops.flatten(h) @ c[8] + c[9])
        return h @ c[10] + c[11]

    return {"mlp": (mlp, m), "cnn": (cnn, c)}


def dlcli_step(model: Callable[[Tensor], Tensor], params: list[Tensor], x: Any, y: Any) -> None:
    for p in params:
        p.grad = None
    loss = ops.softmax_cross_entropy(model(Tensor(x)), y)
    loss.backward()


# -- torch models --------------------------------------------------------------------------------


def torch_step(torch: Any, model: Any, x: Any, y: Any) -> None:
    model.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()


# -- measuring -------------------------------------------------------------------------------------


def median_time(step: Callable[[], None], repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def traced_peak(step: Callable[[], None]) -> int:
    """Peak bytes numpy allocates during one step (numpy reports its buffers to tracemalloc)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    step()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def maxrss_mib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for dlcli and torch (default: every core)")
    parser.add_argument("--impl", choices=["auto", "layers", "ops"], default="auto",
                        help="dlcli models from nn layers, raw ops, or layers when they work")
    parser.add_argument("--no-torch", action="store_true", help="time dlcli only")
    parser.add_argument("--no-malloc-tune", action="store_true",
                        help="leave glibc's defaults (dlcli train keeps freed memory)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args()

    blas, blas_threads = blas_info()
    set_num_threads(args.threads)
    threads = get_num_threads()
    malloc_tuned = False if args.no_malloc_tune else tune_host_allocator()
    n = args.batch_size
    rng = np.random.default_rng(0)
    data = {
        "mlp": rng.standard_normal((n, 784)).astype(np.float32),
        "cnn": rng.standard_normal((n, 28, 28, 1)).astype(np.float32),
    }
    labels = rng.integers(0, 10, n)

    impl = args.impl
    models = None
    if impl in ("auto", "layers"):
        try:
            models = dlcli_models_from_layers()
            for name, (model, params) in models.items():
                dlcli_step(model, params, data[name][:2], labels[:2])  # smoke test
            impl = "layers"
        except Exception as e:  # the layers are another module's work: fall back, say why
            if impl == "layers":
                raise
            print(f"dlcli.nn layers unusable ({type(e).__name__}: {e}); using raw ops",
                  file=sys.stderr)
            models = None
    if models is None:
        models, impl = dlcli_models_from_ops(), "ops"

    results: dict[str, Any] = {
        "batch_size": n, "repeats": args.repeats, "threads": threads, "blas": blas,
        "blas_threads": blas_threads,
        "dlcli_impl": impl, "numpy": np.__version__, "python": platform.python_version(),
        "malloc_tuned": malloc_tuned, "models": {},
    }  # fmt: skip
    for name, (model, params) in models.items():
        x, y = data[name], labels

        def step(model=model, params=params, x=x, y=y) -> None:
            dlcli_step(model, params, x, y)

        t = median_time(step, args.repeats, args.warmup)
        results["models"][name] = {
            "dlcli_samples_per_s": n / t,
            "dlcli_ms_per_step": t * 1e3,
            "dlcli_peak_traced_mib": traced_peak(step) / 2**20,
        }
    results["maxrss_mib_after_dlcli"] = maxrss_mib()
    set_num_threads(1)  # BLAS gets its own limits back for torch

    if not args.no_torch:
        import torch  # only the benchmark imports torch

        torch.set_num_threads(threads)
        results["torch"] = torch.__version__
        tmodels = torch_models(torch)
        ty = torch.from_numpy(labels)
        for name, model in tmodels.items():
            x = torch.from_numpy(data[name] if name == "mlp" else data[name].transpose(0, 3, 1, 2))
            x = x.contiguous()
            t = median_time(lambda model=model, x=x: torch_step(torch, model, x, ty),
                            args.repeats, args.warmup)  # fmt: skip
            r = results["models"][name]
            r["torch_samples_per_s"] = n / t
            r["torch_ms_per_step"] = t * 1e3
            r["ratio_dlcli_over_torch"] = r["dlcli_samples_per_s"] / r["torch_samples_per_s"]
        results["maxrss_mib_after_torch"] = maxrss_mib()

    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"BLAS: {blas}, threads={blas_threads}; dlcli and torch threads={threads}; "
          f"numpy {np.__version__}; batch {n}; "
          f"median of {args.repeats} steps after {args.warmup} warmup")  # fmt: skip
    print(f"dlcli models built from: {impl}; glibc malloc tuned: {malloc_tuned}")
    for name, r in results["models"].items():
        line = (f"{name}: dlcli {r['dlcli_samples_per_s']:9.0f} samples/s "
                f"({r['dlcli_ms_per_step']:.2f} ms/step, peak {r['dlcli_peak_traced_mib']:.1f} MiB "
                f"numpy)")  # fmt: skip
        if "torch_samples_per_s" in r:
            line += (f" | torch {r['torch_samples_per_s']:9.0f} samples/s "
                     f"({r['torch_ms_per_step']:.2f} ms) | dlcli/torch "
                     f"{r['ratio_dlcli_over_torch']:.2f}")  # fmt: skip
        print(line)
    rss = f"max RSS: {results['maxrss_mib_after_dlcli']:.0f} MiB after dlcli"
    if "maxrss_mib_after_torch" in results:
        rss += f", {results['maxrss_mib_after_torch']:.0f} MiB after torch"
    print(rss)


if __name__ == "__main__":
    main()
