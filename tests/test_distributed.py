"""Data parallel over MPI: launch detection, the single-process communicator, synchronized
BatchNorm on simulated replicas, and real 2-rank runs under the mpich wheel's mpiexec.

The MPI runs need mpi4py and mpiexec (the `mpi` extra) and are skipped without them. Their
2-rank weights are compared with a 1-process run of the same global batch: they agree to
float32 rounding, not bit for bit, since the all-reduce adds two partial sums where one
process adds every sample in one pass (see TOLERANCE).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dlcli.cli.main import main
from dlcli.config import load_config
from dlcli.core import Tensor, ops
from dlcli.distributed import Communicator, communicator_for, detect_launch
from dlcli.distributed.env import Launch
from dlcli.distributed.mpi import share
from dlcli.errors import DlcliError
from dlcli.io.checkpoint import load_checkpoint
from dlcli.train.trainer import Trainer

ROOT = Path(__file__).parent.parent

# no dropout (each rank would draw its own masks) and a synchronized BatchNorm, so 2 ranks
# compute what 1 process does; SGD with momentum keeps the update linear in the gradient
TINY = """
name: tiny
seed: 5
data: {dataset: blobs, n_samples: 100, validation_split: 0.2, test_split: 0.0, batch_size: 16,
       normalize: standardize}
model:
  input_shape: [2]
  layers:
    - {type: Dense, units: 8, activation: relu}
    - {type: BatchNorm, synchronized: true}
    - {type: Dense, units: 3, activation: softmax}
loss: categorical_crossentropy
metrics: [accuracy]
optimizer: {type: sgd, learning_rate: 0.1, momentum: 0.9}
training: {epochs: 2}
"""

# float32 rounding: each step's gradient differs from one process's in the last bits (the
# all-reduce adds the ranks' partial sums, one process adds all samples in one pass; the
# BatchNorm sums likewise), and 10-18 SGD steps carry that into the weights. Measured: at most
# 3 ulps of the largest weight; allowed: 32 ulps. A wrong weighting of unequal shards, or
# per-rank BatchNorm statistics, moves weights by 1e-3 and more.
TOLERANCE = 32 * float(np.finfo(np.float32).eps)


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    return path


# -- without MPI ----------------------------------------------------------------------------
@pytest.mark.parametrize(("env", "expected"), [
    ({"PMI_RANK": "1", "PMI_SIZE": "2", "MPI_LOCALRANKID": "1"}, Launch(1, 2, 1, "PMI_SIZE")),
    ({"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "4",
      "OMPI_COMM_WORLD_LOCAL_RANK": "1"}, Launch(3, 4, 1, "OMPI_COMM_WORLD_SIZE")),
    ({"MV2_COMM_WORLD_RANK": "0", "MV2_COMM_WORLD_SIZE": "2"},
     Launch(0, 2, 0, "MV2_COMM_WORLD_SIZE")),
    ({"PMI_RANK": "2", "PMI_SIZE": "4", "SLURM_LOCALID": "0"}, Launch(2, 4, 0, "PMI_SIZE")),
    ({"PMI_RANK": "0", "PMI_SIZE": "1"}, Launch(0, 1, 0, "PMI_SIZE")),
    ({}, None),
    ({"SLURM_PROCID": "1", "SLURM_NTASKS": "2"}, None),  # a batch job is not an MPI launch
    ({"PMI_RANK": "x", "PMI_SIZE": "2"}, None),
    ({"PMI_RANK": "2", "PMI_SIZE": "2"}, None),
])
def test_detect_launch(env: dict[str, str], expected: Launch | None) -> None:
    assert detect_launch(env) == expected


def test_communicator_for_without_a_launch() -> None:
    comm, note = communicator_for(None, None)
    assert type(comm) is Communicator and note is None
    comm, note = communicator_for(True, None)
    assert type(comm) is Communicator and "not started by mpiexec" in note
    comm, note = communicator_for(True, Launch(0, 1, 0, "PMI_SIZE"))
    assert type(comm) is Communicator and note is not None
    # --no-distributed: alone even under mpiexec, and MPI is not loaded
    comm, note = communicator_for(False, Launch(1, 2, 0, "PMI_SIZE"))
    assert type(comm) is Communicator and note is None


def test_missing_mpi4py_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(DlcliError, match=r"pip install 'dlcli\[mpi\]'"):
        communicator_for(None, Launch(0, 2, 0, "PMI_SIZE"))


@pytest.mark.parametrize("size", [1, 2, 3, 4])
@pytest.mark.parametrize("m", [4, 5, 9, 16, 17])
def test_shares_cover_the_batch_in_order(m: int, size: int) -> None:
    parts = [share(10, 10 + m, r, size) for r in range(size)]
    assert parts[0][0] == 10 and parts[-1][1] == 10 + m
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:], strict=False))
    sizes = [hi - lo for lo, hi in parts]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_single_process_communicator_touches_nothing() -> None:
    comm = Communicator()
    g = np.ones(3, dtype=np.float32)
    p = Tensor(np.zeros(3, dtype=np.float32), requires_grad=True)
    p.grad = g
    assert comm.reduce_gradients([p], 15, True) == (15, True)
    assert p.grad is g  # not packed, not copied
    assert comm.loss_seed(np.float32(1.0), 4, 8) is None
    assert comm.sharder(100, 16) is None and comm.notes(None, 16) == []
    assert comm.stop_before_batch(True) and not comm.stop_before_batch(False)
    assert comm.on_root(lambda: 7) == 7 and comm.agree(lambda: 8) == 8


def test_distributed_flag_alone_trains_in_this_process(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    config = write(tmp_path / "tiny.yaml", TINY)
    res = CliRunner().invoke(main, ["train", str(config), "--distributed", "--epochs", "1",
                                    "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert "not started by mpiexec" in res.output and "run saved in" in res.output
    assert (tmp_path / "run" / "checkpoints" / "last.npz").exists()


class ThreadSum:
    """An all-reduce among threads: each replica of an op runs on its own thread."""

    def __init__(self, n: int) -> None:
        self.barrier = threading.Barrier(n)
        self.parts: list[np.ndarray | None] = [None] * n
        self.total: np.ndarray | None = None

    def of(self, rank: int):
        def reduce(a: np.ndarray) -> np.ndarray:
            self.parts[rank] = np.array(a)
            if self.barrier.wait() == 0:
                self.total = sum(self.parts)
            self.barrier.wait()
            out = self.total.copy()
            self.barrier.wait()  # every replica has its copy before the next call
            return out
        return reduce


@pytest.mark.parametrize("shape", [(9, 4), (5, 3, 2, 4)])
def test_synchronized_batchnorm_is_one_batch_norm(shape: tuple[int, ...]) -> None:
    """Replicas holding 5 and 4 (or 3 and 2) samples, summing through `reduce`, give the
    outputs, input gradients and running statistics of one batch norm over all of them; the
    gamma and beta gradients add up to the whole batch's."""
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, shape)
    gy = rng.normal(size=shape)
    gamma, beta = rng.normal(size=shape[-1]), rng.normal(size=shape[-1])
    cut = (shape[0] + 1) // 2

    def run(xs, gys, reduce=None):
        mean, var = np.zeros(shape[-1]), np.ones(shape[-1])
        t, g, b = Tensor(xs, requires_grad=True), Tensor(gamma.copy(), requires_grad=True), \
            Tensor(beta.copy(), requires_grad=True)
        y = ops.batch_norm(t, g, b, mean, var, training=True, reduce=reduce)
        y.backward(gys)
        return y.data, t.grad, g.grad, b.grad, mean, var

    whole = run(x, gy)
    sums, out = ThreadSum(2), [None, None]
    parts = [(x[:cut], gy[:cut]), (x[cut:], gy[cut:])]

    def replica(r: int) -> None:
        out[r] = run(*parts[r], reduce=sums.of(r))

    threads = [threading.Thread(target=replica, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    y, gx = (np.concatenate([out[0][i], out[1][i]]) for i in (0, 1))
    np.testing.assert_allclose(y, whole[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gx, whole[1], rtol=1e-10, atol=1e-12)
    for i in (2, 3):  # gamma, beta: each replica's own part; the ranks' all-reduce adds them
        np.testing.assert_allclose(out[0][i] + out[1][i], whole[i], rtol=1e-12)
    for r in (0, 1):
        for i in (4, 5):
            np.testing.assert_allclose(out[r][i], whole[i], rtol=1e-12)


# -- under mpiexec ----------------------------------------------------------------------------
def _mpiexec() -> str | None:
    beside = Path(sys.executable).parent / "mpiexec"  # where the mpich wheel puts it
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def _needs_mpi() -> str:
    pytest.importorskip("mpi4py", reason="the mpi extra is not installed")
    mpiexec = _mpiexec()
    if mpiexec is None:
        pytest.skip("no mpiexec (pip install 'dlcli[mpi]' brings MPICH's)")
    return mpiexec


def _run(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "OMPI_", "MPI_", "MV2_"))}
    env.update(PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1", COLUMNS="200")
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _one_process(config: Path, out: Path, *overrides: str) -> dict[str, np.ndarray]:
    Trainer(load_config(config, list(overrides)), run_dir=out).fit()
    return load_checkpoint(out / "checkpoints" / "last.npz").weights


def _assert_close(two: dict[str, np.ndarray], one: dict[str, np.ndarray]) -> None:
    assert two.keys() == one.keys()
    for key in one:
        scale = max(1.0, float(np.abs(one[key]).max()))
        np.testing.assert_allclose(two[key], one[key], rtol=0, atol=TOLERANCE * scale,
                                   err_msg=key)


@pytest.mark.parametrize("batch_size", [16, 9], ids=["equal-shards", "shards-5-and-4"])
def test_two_ranks_train_as_one_process(tmp_path: Path, batch_size: int) -> None:
    mpiexec = _needs_mpi()
    config = write(tmp_path / "tiny.yaml", TINY)
    res = _run([mpiexec, "-n", "2", sys.executable, "-m", "dlcli", "train", str(config),
                "--set", f"data.batch_size={batch_size}"], cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    # rank 0 alone prints and writes: one run directory, each line once
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1, runs
    assert res.stdout.count("data parallel over 2 MPI ranks") == 1, res.stdout
    assert res.stdout.count("run saved in") == 1
    log = (runs[0] / "train.log").read_text()
    assert log.count("epoch 2/2") == 1 and "synchronized over the ranks" in log
    assert f"per-rank batch {'8' if batch_size == 16 else '4-5'} of the global {batch_size}" \
        in log
    one = _one_process(config, tmp_path / "one", f"data.batch_size={batch_size}")
    _assert_close(load_checkpoint(runs[0] / "checkpoints" / "last.npz").weights, one)


STOP_ON_RANK_1 = """
import os, signal, sys
import numpy as np
from dlcli.config import load_config
from dlcli.distributed.mpi import MpiCommunicator
from dlcli.train.trainer import Interrupted, Trainer

comm = MpiCommunicator()
trainer = Trainer(load_config(sys.argv[1], ["data.batch_size=9"]), run_dir=sys.argv[2],
                  comm=comm)
step, steps = trainer.optimizer.step, [0]

def counted():
    step()
    steps[0] += 1
    if comm.rank == 1 and steps[0] == 3:  # SIGTERM reaches rank 1 alone
        os.kill(os.getpid(), signal.SIGTERM)

trainer.optimizer.step = counted
try:
    trainer.fit()
except Interrupted as e:
    weights = comm.world.allgather(trainer.model.get_weights())
    same = all(np.array_equal(w[k], weights[0][k]) for w in weights for k in w)
    print(f"rank {comm.rank} stopped after {steps[0]} steps; same weights: {same}", flush=True)
    sys.exit(e.exit_code)
"""


def test_a_signal_on_one_rank_stops_all_and_resume_continues(tmp_path: Path) -> None:
    mpiexec = _needs_mpi()
    config = write(tmp_path / "tiny.yaml", TINY)
    script = write(tmp_path / "stop.py", STOP_ON_RANK_1)
    res = _run([mpiexec, "-n", "2", sys.executable, str(script), str(config), "a"],
               cwd=tmp_path)
    assert res.returncode == 128 + signal.SIGTERM, res.stdout + res.stderr
    # rank 1's request travels with step 4's all-reduce: both ranks stop before batch 5
    for rank in (0, 1):
        assert f"rank {rank} stopped after 4 steps; same weights: True" in res.stdout
    ckpt = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.npz")
    assert ckpt.meta["position"]["batch"] == 4 and ckpt.meta["position"]["seen"] == 36
    assert '"status": "interrupted"' in (tmp_path / "a" / "run.json").read_text()
    res = _run([mpiexec, "-n", "2", sys.executable, "-m", "dlcli", "train", str(config),
                "--set", "data.batch_size=9", "--resume", "a/checkpoints/last.npz",
                "--run-dir", "b"], cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    one = _one_process(config, tmp_path / "one", "data.batch_size=9")
    _assert_close(load_checkpoint(tmp_path / "b" / "checkpoints" / "last.npz").weights, one)
    assert (tmp_path / "b" / "history.csv").read_text().count("\n") == 3  # header + 2 epochs


def test_an_error_on_one_rank_ends_every_rank(tmp_path: Path) -> None:
    """Rank 1 alone reads a config whose model differs: taking rank 0's weights fails there,
    and MPI_Abort ends rank 0 too (which would otherwise wait in its first all-reduce)."""
    mpiexec = _needs_mpi()
    config = write(tmp_path / "tiny.yaml", TINY)
    res = _run([mpiexec, "-n", "1", sys.executable, "-m", "dlcli", "train", str(config),
                "--run-dir", "a", ":", "-n", "1", sys.executable, "-m", "dlcli", "train",
                str(config), "--run-dir", "a", "--set", "model.layers[0].units=6"],
               cwd=tmp_path, timeout=60)
    assert res.returncode != 0
    assert "rank 1: " in res.stderr and "the model expects" in res.stderr, res.stderr
