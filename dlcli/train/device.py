"""What stays on the device during an epoch: the batches and the loss sums.

A read from the device makes the host wait for every queued kernel, so a training step reads
nothing: the trainer slices batches where the data lives, adds the losses up on the device, and
reads the sums (through dlcli.core.backend.to_host) once per epoch, at a stop, and for the
progress bar at most every `Trainer.read_every` seconds. On numpy nothing moves anywhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from dlcli.core.backend import to_host
from dlcli.errors import DlcliError


class LossSums:
    """The epoch's data-loss and regularization sums (float64, sample-weighted) on the device,
    with each batch's loss, so that a read finds the batch where training diverged.

    The sums are added in the order and precision of the Python floats they replace
    (float32 loss -> float64, times the batch size, added), so a run's numbers are unchanged.
    """

    def __init__(self, xp: ModuleType, n_batches: int, data_total: float = 0.0,
                 reg_total: float = 0.0, checked: int = 0) -> None:
        self.xp = xp
        self.data = xp.asarray(data_total, dtype=np.float64)
        self.reg = xp.asarray(reg_total, dtype=np.float64)
        self.batch_loss = xp.zeros(max(n_batches, 1), dtype=np.float64)
        self.checked = checked  # batches before this one are known to be finite

    def add(self, b: int, k: int, data_loss: Any, reg: Any | None) -> None:
        """Batch b of k samples: its data loss and regularization (device scalars, or None)."""
        dl = data_loss.astype(np.float64)
        self.data += dl * k
        if reg is None:
            self.batch_loss[b] = dl
            return
        rl = reg.astype(np.float64)
        self.reg += rl * k
        self.batch_loss[b] = dl + rl

    def read(self, epoch: int, upto: int) -> tuple[float, float]:
        """(data_total, reg_total) after batch `upto` - 1, in one transfer.

        Raises:
            DlcliError: a batch's loss was not finite (the first such batch is named).
        """
        data, reg = self.totals()
        if not math.isfinite(data + reg):
            raise self.diverged(to_host(self.batch_loss[self.checked:upto]), epoch, upto,
                                data + reg)
        self.checked = upto
        return data, reg

    def totals(self) -> tuple[float, float]:
        """(data_total, reg_total) as they stand, in one transfer, unchecked."""
        data, reg = (float(v) for v in to_host(self.xp.stack([self.data, self.reg])))
        return data, reg

    def diverged(self, losses: np.ndarray, epoch: int, upto: int, total: float) -> DlcliError:
        """The error naming the first non-finite loss of `losses` (batches checked..upto-1)."""
        bad = np.flatnonzero(~np.isfinite(losses))
        value, batch = (float(losses[bad[0]]), self.checked + int(bad[0]) + 1) if bad.size \
            else (total, upto)
        return DlcliError(f"the loss became {value} at epoch {epoch + 1}, batch {batch}: "
                          "training diverged; lower optimizer.learning_rate or add clipnorm")


class Batches:
    """Mini-batches of the training arrays, made on the model's device.

    numpy: `x[idx]`, as always. cupy: when x and y take at most `fraction` of the device's
    memory (and fit in what is free) they are uploaded once and every batch is gathered there;
    otherwise each batch is gathered on the host into pinned memory (two buffers, used in turn)
    and copied from there without a pageable staging copy. The order of the samples is the
    trainer's numpy permutation either way; only the index array moves to the device.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, xp: ModuleType, fraction: float) -> None:
        self.x, self.y, self.xp = x, y, xp
        # under MPI: (lo, hi) of a global batch -> this rank's part of it (see dlcli.distributed)
        self.shard: Callable[[int, int], tuple[int, int]] | None = None
        self.on_device = False
        self.order: Any = None
        self._dev_order: Any = None
        self._pinned: list[dict[str, np.ndarray]] = [{}, {}]
        self._events: list[Any] = [None, None]
        self._turn = 0
        if xp is np:
            return
        need = x.nbytes + y.nbytes
        free, total = xp.cuda.runtime.memGetInfo()
        if need <= fraction * total and need < free:
            self.x_dev, self.y_dev = xp.asarray(x), xp.asarray(y)
            self.on_device = True

    def epoch(self, order: np.ndarray) -> None:
        """Use `order` (a permutation of the samples) for the batches that follow."""
        self.order = order
        if self.on_device:
            self._dev_order = self.xp.asarray(order)

    def batch(self, b: int, batch_size: int) -> tuple[Any, Any]:
        """Batch b: (x, y) on the device."""
        lo, hi = b * batch_size, (b + 1) * batch_size
        if self.shard is not None:
            lo, hi = self.shard(lo, min(hi, len(self.order)))
        if self.xp is np:
            idx = self.order[lo:hi]
            return self.x[idx], self.y[idx]
        if self.on_device:
            idx = self._dev_order[lo:hi]
            return self.x_dev[idx], self.y_dev[idx]
        return self._staged(self.order[lo:hi], batch_size)

    def _staged(self, idx: np.ndarray, batch_size: int) -> tuple[Any, Any]:
        cp, turn = self.xp, self._turn
        self._turn = 1 - turn
        stream = cp.cuda.get_current_stream()
        if self._events[turn] is not None:
            self._events[turn].synchronize()  # its previous copy has left the buffer
        out = []
        for name, a in (("x", self.x), ("y", self.y)):
            buf = self._pinned[turn].get(name)
            if buf is None:
                shape = (batch_size, *a.shape[1:])
                mem = cp.cuda.alloc_pinned_memory(max(math.prod(shape) * a.itemsize, 1))
                buf = np.frombuffer(mem, a.dtype, math.prod(shape)).reshape(shape)
                self._pinned[turn][name] = buf
            host = buf[:len(idx)]
            np.take(a, idx, axis=0, out=host)
            dev = cp.empty(host.shape, dtype=host.dtype)
            # with a stream, set() copies asynchronously (it can: the memory is pinned), in order
            # with the kernels that use it; without one it would wait for the device
            dev.set(host, stream=stream)
            out.append(dev)
        event = cp.cuda.Event()
        event.record(stream)
        self._events[turn] = event
        return out[0], out[1]


def device_data_note(batches: Batches) -> str | None:
    """A train.log line saying where a GPU run keeps its training data; None on the CPU."""
    if batches.xp is np:
        return None
    size = (batches.x.nbytes + batches.y.nbytes) / 2**20
    if batches.on_device:
        return f"training data ({size:,.1f} MiB) uploaded to the GPU once; batches are cut there"
    return (f"training data ({size:,.1f} MiB) stays in host memory (more than "
            "training.device_data_fraction of the GPU's); batches are staged through pinned memory")

