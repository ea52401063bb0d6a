"""Samples per second of data-parallel training over MPI: 1 process against 2 ranks.

The Fashion-MNIST MLP and CNN of configs/ train through the Trainer (the `dlcli train` path:
batches of the config's global batch size, 128, split over the ranks; one fused all-reduce of
the gradients per step) with one thread each: OPENBLAS_NUM_THREADS=1 and dlcli's own thread
count 1, so 2 ranks use 2 cores where 1 process uses one. After --warmup steps, --steps steps
are timed on rank 0 (every rank waits for the others in the all-reduce, so they run in
lockstep); the run then stops itself. 1 rank is a plain process with no MPI at all.

Reported per model and rank count: samples/s, speed-up over 1 process, ms per step, the ms of
each step spent in the all-reduce (with the wait for the slower rank), and the bytes it sums.

Run (OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE slow OpenBLAS down, so unset them for benchmarks):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_mpi.py
Options: --models mlp,cnn, --ranks 1,2, --steps, --warmup, --quick (a smoke run: few steps).
Needs the mpi extra (pip install -e '.[mpi]') and Fashion-MNIST (apt-get install
dataset-fashion-mnist). On a busy machine the figures are noise: run it on a quiet one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {"mlp": ROOT / "configs" / "fashion_mnist_mlp.yaml",
           "cnn": ROOT / "configs" / "fashion_mnist_cnn.yaml"}


def worker(args: argparse.Namespace) -> None:
    """One rank (or the lone process): train until warmup + steps steps, time the steps."""
    from threadpoolctl import threadpool_limits

    from dlcli.config import load_config
    from dlcli.core import set_num_threads
    from dlcli.distributed import communicator_for
    from dlcli.distributed.mpi import N_FLAGS
    from dlcli.train.trainer import Interrupted, Trainer

    comm, _ = communicator_for(None)
    cfg = load_config(CONFIGS[args.model], ["training.epochs=1"])
    run_dir = Path(args.out) / f"{args.model}-{comm.size}"
    trainer = Trainer(cfg, run_dir=run_dir, comm=comm)
    set_num_threads(1)  # after the Trainer, which gives the core every core it may use
    blas = threadpool_limits(1, user_api="blas")
    marks: list[float] = []
    in_reduce = [0.0]
    step, reduce = trainer.optimizer.step, comm.reduce_gradients

    def timed_step() -> None:
        step()
        marks.append(time.perf_counter())
        if len(marks) == args.warmup + args.steps + 1:
            trainer.request_stop()

    def timed_reduce(*a: Any) -> Any:
        t = time.perf_counter()
        out = reduce(*a)
        if len(marks) >= args.warmup + 1:  # the steps timed: after marks[warmup]
            in_reduce[0] += time.perf_counter() - t
        return out

    trainer.optimizer.step = timed_step
    comm.reduce_gradients = timed_reduce  # type: ignore[method-assign]
    try:
        trainer.fit()
    except Interrupted:
        pass
    blas.restore_original_limits()
    if comm.is_root:
        seconds = marks[args.warmup + args.steps] - marks[args.warmup]
        params = sum(int(w.data.size) for w in trainer.model.trainable_weights)
        print(json.dumps({
            "model": args.model, "ranks": comm.size, "batch": cfg.data.batch_size,
            "samples_per_s": args.steps * cfg.data.batch_size / seconds,
            "ms_per_step": 1000 * seconds / args.steps,
            "allreduce_ms_per_step": 1000 * in_reduce[0] / args.steps,
            "allreduce_bytes": 0 if comm.size == 1 else 4 * (params + N_FLAGS),
        }), flush=True)


def mpiexec() -> str:
    beside = Path(sys.executable).parent / "mpiexec"  # where the mpich wheel puts it
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if found is None:
        sys.exit("no mpiexec: pip install -e '.[mpi]'")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--ranks", default="1,2")
    parser.add_argument("--steps", type=int, default=None,
                        help="steps timed (default 200 for the MLP, 40 for the CNN)")
    parser.add_argument("--warmup", type=int, default=None, help="steps before (default 5)")
    parser.add_argument("--quick", action="store_true", help="a few steps: a smoke run")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "OMPI_", "MPI_", "MV2_"))}
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for model in args.models.split(","):
            steps = args.steps or (5 if args.quick else 200 if model == "mlp" else 40)
            warmup = args.warmup if args.warmup is not None else (1 if args.quick else 5)
            for ranks in (int(r) for r in args.ranks.split(",")):
                cmd = [sys.executable, __file__, "--worker", "--model", model, "--out", out,
                       "--steps", str(steps), "--warmup", str(warmup)]
                if ranks > 1:
                    cmd = [mpiexec(), "-n", str(ranks), *cmd]
                res = subprocess.run(cmd, env=env, capture_output=True, text=True)
                lines = [line for line in res.stdout.splitlines() if line.startswith("{")]
                if res.returncode != 0 or not lines:
                    sys.exit(f"{' '.join(cmd)} failed:\n{res.stdout}\n{res.stderr}")
                rows.append(json.loads(lines[-1]))
                shutil.rmtree(Path(out) / f"{model}-{ranks}", ignore_errors=True)
    base = {r["model"]: r["samples_per_s"] for r in rows if r["ranks"] == 1}
    print(f"{'model':6} {'ranks':>5} {'samples/s':>10} {'speed-up':>8} {'ms/step':>8} "
          f"{'all-reduce ms':>13} {'bytes/step':>11}")
    for r in rows:
        up = r["samples_per_s"] / base[r["model"]] if r["model"] in base else float("nan")
        print(f"{r['model']:6} {r['ranks']:>5} {r['samples_per_s']:>10,.0f} {up:>8.2f} "
              f"{r['ms_per_step']:>8.1f} {r['allreduce_ms_per_step']:>13.2f} "
              f"{r['allreduce_bytes']:>11,}")


if __name__ == "__main__":
    main()
