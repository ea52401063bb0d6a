"""Data-parallel training over MPI ranks (the `mpi` extra: mpi4py and the mpich wheel).

Every rank holds the whole model and takes a contiguous share of each global batch. Backward
starts from k_r / B instead of 1 (k_r of the batch's B samples are on rank r), so the sum over
ranks of the gradients is the gradient of the whole batch's mean loss, even when the shares
differ, and a synchronized BatchNorm sees the same upstream gradient a single process would.
That sum is ONE in-place Allreduce per step of a preallocated flat buffer holding every
gradient and a few flags (a stop signal, "read the loss now"); the optimizer step that
follows is then the same on every rank. Epoch sums are all-reduced once per epoch.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, TypeVar

import numpy as np

from dlcli.core.backend import get_array_module, to_host
from dlcli.distributed.comm import Communicator
from dlcli.errors import DlcliError

T = TypeVar("T")

# one flag per stop signal (a sum of flags must still say which), then "read the loss now"
STOP_SLOTS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                   if hasattr(signal, name))
N_FLAGS = len(STOP_SLOTS) + 1


def share(lo: int, hi: int, rank: int, size: int) -> tuple[int, int]:
    """Rank `rank`'s contiguous part of [lo, hi): the first (hi - lo) % size ranks take one more.

    Example:
        share(0, 9, 0, 2) == (0, 5); share(0, 9, 1, 2) == (5, 9)
    """
    base, extra = divmod(hi - lo, size)
    start = lo + rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def every_rank(err: BaseException) -> BaseException:
    """Mark an error that every rank raises at the same point: each ends alike, none aborts."""
    err.every_rank = True  # type: ignore[attr-defined]
    return err


class MpiCommunicator(Communicator):
    """This process as one rank of MPI_COMM_WORLD (MPI is started when it is made).

    Example:
        trainer = Trainer(cfg, comm=MpiCommunicator())  # under mpiexec -n 2
    """

    def __init__(self) -> None:
        from dlcli.extras import require

        mpi4py = require("mpi4py", "mpi", "training over MPI")
        mpi4py.rc.thread_level = "funneled"  # only the main thread calls MPI
        try:
            from mpi4py import MPI
        except (ImportError, RuntimeError) as e:  # mpi4py without an MPI library to load
            raise DlcliError(f"mpi4py cannot load an MPI library ({e}); pip install "
                             "'dlcli[mpi]' installs MPICH's") from None
        self.MPI = MPI
        self.world = MPI.COMM_WORLD
        self.rank, self.size = self.world.Get_rank(), self.world.Get_size()
        node = self.world.Split_type(MPI.COMM_TYPE_SHARED)
        self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
        node.Free()
        first = MPI.Get_library_version().strip().splitlines()[0].split(",")[0]
        self.library = " ".join(first.replace("Version:", "").split())  # "MPICH 5.0.2"
        self.cuda_aware = False
        self._agreed_stop = 0
        self._buffer: Any = None  # the flat gradient buffer, made on the first step
        self._host: np.ndarray | None = None  # its host copy when a GPU's is staged
        self._n = self._batch_size = 0
        self._blas_limit: Any = None

    # -- set-up -----------------------------------------------------------------------------
    def cpu_threads(self) -> int | None:
        """This host's cores shared among its ranks; with one each, BLAS gets one thread too."""
        try:
            cores = len(os.sched_getaffinity(0))  # the cores this process may run on
        except AttributeError:  # not on Linux
            cores = os.cpu_count() or 1
        n = max(1, cores // self.local_size)
        if n == 1:
            from threadpoolctl import threadpool_limits

            self._blas_limit = threadpool_limits(1, user_api="blas")
        return n

    def use_device(self, xp: ModuleType) -> list[str]:
        if xp is np:
            return []
        count = xp.cuda.runtime.getDeviceCount()
        device = self.local_rank % count
        xp.cuda.Device(device).use()
        kinds = ""
        try:
            kinds = self.world.Get_info().Get("mpi_memory_alloc_kinds") or ""
        except Exception:  # noqa: BLE001 - an MPI before 4.1 has no such key
            pass
        forced = os.environ.get("DLCLI_MPI_CUDA_AWARE")
        self.cuda_aware = forced == "1" if forced in ("0", "1") else "cuda" in kinds
        how = ("on the GPU (CUDA-aware MPI)" if self.cuda_aware
               else "through host memory (this MPI is not CUDA-aware)")
        return [f"rank {self.rank}: GPU {device} of {count} on this host; gradients are "
                f"all-reduced {how}"]

    def notes(self, model: Any, batch_size: int) -> list[str]:
        params = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        itemsize = np.dtype(_grad_dtype(model.trainable_weights)).itemsize
        lo, hi = batch_size // self.size, -(-batch_size // self.size)
        per_rank = f"{lo}" if lo == hi else f"{lo}-{hi}"
        bn = [layer for layer in model.walk() if hasattr(layer, "synchronized")]
        synced = sum(bool(layer.synchronized) for layer in bn)
        lines = [
            f"data parallel over {self.size} MPI ranks ({self.local_size} on this host; "
            f"{self.library}): per-rank batch {per_rank} of the global {batch_size}; one "
            f"all-reduce of {params * itemsize + N_FLAGS * itemsize:,} bytes per step "
            f"({params:,} trainable parameters x {itemsize} bytes + {N_FLAGS} flags)"]
        if bn:
            lines.append(f"BatchNorm: {synced} of {len(bn)} layers synchronized over the ranks"
                         + ("" if synced == len(bn) else "; the others use each rank's own "
                            "batch statistics (synchronized: true shares them)"))
        return lines

    def attach(self, model: Any) -> None:
        for layer in model.walk():
            if getattr(layer, "synchronized", False):
                layer.all_reduce = self.allreduce_sum

    def sharder(self, n: int, batch_size: int) -> Callable[[int, int], tuple[int, int]]:
        last = n % batch_size or batch_size
        if min(batch_size, last) < self.size:
            which = (f"data.batch_size {batch_size}" if batch_size < self.size else
                     f"the last batch ({n:,} training samples leave {last} for it)")
            raise every_rank(DlcliError(
                f"{which} is smaller than the {self.size} ranks: each rank needs a sample of "
                "every batch; choose a batch_size that leaves at least that many, or run fewer "
                "ranks"))
        self._n, self._batch_size = n, batch_size
        rank, size = self.rank, self.size
        return lambda lo, hi: share(lo, hi, rank, size)

    def agree(self, fn: Callable[[], T]) -> T:
        try:
            value, mine = fn(), None
        except DlcliError as e:
            value, mine = None, e
        failed = [(rank, msg, code) for rank, (msg, code) in enumerate(self.world.allgather(
            (None, 0) if mine is None else (str(mine), mine.exit_code))) if msg is not None]
        if mine is not None:
            raise every_rank(mine) from None
        if failed:
            rank, msg, code = failed[0]
            err = DlcliError(f"rank {rank}: {msg}")
            err.exit_code = code
            raise every_rank(err)
        return value

    def on_root(self, fn: Callable[[], T]) -> T:
        if self.is_root:
            try:
                value = fn()
            except DlcliError as e:
                self.world.bcast(("error", str(e), e.exit_code), root=0)
                raise every_rank(e) from None
            self.world.bcast(("ok", value, 0), root=0)
            return value
        tag, value, code = self.world.bcast(None, root=0)
        if tag == "error":
            err = DlcliError(value)
            err.exit_code = code
            raise every_rank(err)
        return value

    def bcast(self, obj: T) -> T:
        return self.world.bcast(obj, root=0)

    def broadcast_weights(self, model: Any) -> None:
        weights = self.world.bcast(model.get_weights() if self.is_root else None, root=0)
        if not self.is_root:
            model.set_weights(weights)

    # -- each step ----------------------------------------------------------------------------
    def loss_seed(self, loss: Any, k: int, total: int) -> Any:
        return get_array_module(loss).full_like(loss, k / total)

    def reduce_gradients(self, params: Sequence[Any], stop: int, read: bool) -> tuple[int, bool]:
        buf = self._buffer
        if buf is None:
            xp = get_array_module(params[0].data)
            size = sum(p.data.size for p in params) + N_FLAGS
            buf = self._buffer = xp.empty(size, dtype=_grad_dtype(params))
        o = 0
        for p in params:  # pack
            n = p.data.size
            if p.grad is None:
                buf[o:o + n] = 0
            else:
                buf[o:o + n] = p.grad.reshape(-1)
            o += n
        flags = np.zeros(N_FLAGS, dtype=buf.dtype)
        if stop:
            flags[STOP_SLOTS.index(stop) if stop in STOP_SLOTS else 0] = 1
        flags[-1] = read
        buf[o:] = get_array_module(buf).asarray(flags)
        flags = self._allreduce(buf)
        o = 0
        for p in params:  # unpack: each gradient becomes a view of the summed buffer
            n = p.data.size
            if p.grad is not None:
                p.grad = buf[o:o + n].reshape(p.data.shape)
            o += n
        self._agreed_stop = next((s for s, f in zip(STOP_SLOTS, flags, strict=False) if f > 0), 0)
        return self._agreed_stop, bool(flags[-1] > 0)

    def _allreduce(self, buf: Any) -> np.ndarray:
        """Sum the gradient buffer over the ranks in place; its summed flags, on the host."""
        MPI = self.MPI
        if isinstance(buf, np.ndarray):
            self.world.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            return buf[-N_FLAGS:]
        import cupy as cp  # untested: no GPU where this was written

        if self.cuda_aware:
            cp.cuda.get_current_stream().synchronize()  # MPI reads what the kernels wrote
            self.world.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            return cp.asnumpy(buf[-N_FLAGS:])
        if self._host is None:  # staged through pinned host memory, allocated once
            mem = cp.cuda.alloc_pinned_memory(buf.nbytes)
            self._host = np.frombuffer(mem, buf.dtype, buf.size)
        host = self._host
        buf.get(out=host)  # waits for the kernels that wrote it
        self.world.Allreduce(MPI.IN_PLACE, host, op=MPI.SUM)
        buf.set(host)
        return host[-N_FLAGS:]

    def allreduce_sum(self, a: Any) -> Any:
        """`a` summed over every rank (a small array: BatchNorm's per-channel sums)."""
        MPI = self.MPI
        if isinstance(a, np.ndarray):
            a = np.ascontiguousarray(a)
            self.world.Allreduce(MPI.IN_PLACE, a, op=MPI.SUM)
            return a
        host = to_host(a).copy()  # untested: no GPU where this was written
        self.world.Allreduce(MPI.IN_PLACE, host, op=MPI.SUM)
        return get_array_module(a).asarray(host)

    def stop_before_batch(self, requested: bool) -> bool:
        return self._agreed_stop != 0

    def agree_stop(self, stop: int) -> int:
        flags = np.zeros(len(STOP_SLOTS))
        if stop:
            flags[STOP_SLOTS.index(stop) if stop in STOP_SLOTS else 0] = 1
        self.world.Allreduce(self.MPI.IN_PLACE, flags, op=self.MPI.SUM)
        return next((s for s, f in zip(STOP_SLOTS, flags, strict=True) if f > 0), 0)

    # -- sums ---------------------------------------------------------------------------------
    def read_loss(self, sums: Any, epoch: int, upto: int, seen: int) -> tuple[float, float, int]:
        return self._totals(sums, epoch, upto, seen, None)[:3]

    def reduce_epoch(self, sums: Any, metrics: Any, epoch: int, upto: int, seen: int,
                     begin: tuple[int, int]) -> tuple[float, float, int]:
        flat, kept = metrics.state()
        data, reg, total, flat = self._totals(sums, epoch, upto, seen, flat)
        outputs = None
        if metrics.gather:  # r2: every output, put where its sample is in the epoch's order
            mine = (self._positions(*begin, upto),
                    np.zeros((0, metrics.cols)) if kept is None else kept.reshape(len(kept), -1))
            outputs = np.empty((total, metrics.cols))
            for positions, out in self.world.allgather(mine):
                outputs[positions] = out
        metrics.load(flat, outputs, total, sums.xp)
        return data, reg, total

    def _totals(self, sums: Any, epoch: int, upto: int, seen: int,
                extra: np.ndarray | None) -> tuple[float, float, int, np.ndarray]:
        data, reg = sums.totals()
        extra = np.zeros(0) if extra is None else extra
        buf = np.concatenate([[data, reg, seen], extra]).astype(np.float64)
        self.world.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        data, reg, total = float(buf[0]), float(buf[1]), int(round(buf[2]))
        if not math.isfinite(data + reg):  # every rank sees the same sums, so all raise
            losses = to_host(sums.batch_loss[sums.checked:upto]).astype(np.float64)
            self.world.Allreduce(self.MPI.IN_PLACE, losses, op=self.MPI.SUM)
            raise every_rank(sums.diverged(losses, epoch, upto, data + reg))
        sums.checked = upto
        return data, reg, total, buf[3:]

    def _positions(self, first: int, prefix: int, upto: int) -> np.ndarray:
        """Where this rank's outputs go in the epoch's order: `prefix` kept from a checkpoint
        (rank 0 only), then its share of batches first..upto-1."""
        bs, n = self._batch_size, self._n
        parts = [np.arange(prefix)]
        for b in range(first, upto):
            parts.append(np.arange(*share(b * bs, min((b + 1) * bs, n), self.rank, self.size)))
        return np.concatenate(parts)

    def abort(self, exit_code: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        time.sleep(0.2)  # mpiexec forwards what was printed before the abort kills us
        self.world.Abort(exit_code)
        os._exit(exit_code)  # MPICH's Abort can return to the caller before it is killed


def _grad_dtype(params: Sequence[Any]) -> Any:
    return np.result_type(*(p.data.dtype for p in params)) if params else np.float32
