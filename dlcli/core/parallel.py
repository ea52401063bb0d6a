"""Intra-op parallelism on the CPU: the big numpy passes of an op split over a few threads.

numpy releases the GIL inside its loops and BLAS calls, so plain Python threads run numpy on
several cores at once, as PyTorch's intra-op threads do. An op hands a function of row
slices to `rowwise`: the leading axis is cut into one contiguous chunk per thread, chunk 0
runs on the calling thread and the others on persistent worker threads. The chunks depend
only on the row count and the thread count, and partial sums are added in chunk order
(`rowwise_sum`), so a result is bit-identical from run to run.

For long after each GEMM OpenBLAS's own threads busy-wait on the other cores, which takes
those cores from our threads; so with more than one thread BLAS is held to one thread and
GEMMs are split by rows here instead (`pmatmul`), except in a run that splits nothing else
(a small MLP), where BLAS's threads are faster. The default is one thread: nothing is split
and BLAS is left alone, so importing dlcli changes nothing. cupy arrays are never split.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from dlcli.core.backend import get_array_module

# work on fewer elements than this runs in one piece: handing a chunk to a thread costs
# tens of microseconds, about what numpy needs for this many floats
MIN_ELEMENTS = 2**16
# the same for a GEMM, in multiply-adds
MIN_MACS = 2**21
# OpenBLAS runs GEMMs below this on one thread anyway (its SMP threshold, 65536 * 4)
_BLAS_SERIAL_MACS = 2**18
# GEMMs go to BLAS's own threads once this many came without a split pass in between
_QUIET_GEMMS = 16

_threads = 1
_workers: list[_Worker] = []
_busy = threading.Lock()  # held while the workers run one call's chunks
_gemms_since_split = _QUIET_GEMMS  # GEMMs since the last split pass other than a GEMM
_blas: Any = None  # threadpoolctl's controller of the BLAS libraries, once needed
_blas_limits: Any = None  # its limiter, alive while BLAS is held to one thread
_blas_threads = 1  # BLAS's own thread count before we held it to one
_blas_now = 1  # the count BLAS runs with now, while we hold it (set_num_threads(n > 1))


class _Worker:
    """One persistent thread that runs one task at a time, handed over through two locks.

    Bare locks wake a thread in microseconds; a ThreadPoolExecutor round trip (futures,
    queue, waiters) costs ~50 us, as much as the work of a mid-sized op.
    """

    def __init__(self) -> None:
        self._go, self._done = threading.Lock(), threading.Lock()
        self._go.acquire()
        self._done.acquire()
        self._task: tuple[Callable[..., Any], tuple[Any, ...]] | None = None
        self._result: Any = None
        self._error: BaseException | None = None
        threading.Thread(target=self._loop, name="dlcli-intraop", daemon=True).start()

    def _loop(self) -> None:
        while True:
            self._go.acquire()
            if self._task is None:  # stop()
                return
            fn, args = self._task
            try:
                self._result, self._error = fn(*args), None
            except BaseException as e:  # handed to the caller in result()
                self._result, self._error = None, e
            self._task = None
            self._done.release()

    def start(self, fn: Callable[..., Any], *args: Any) -> None:
        self._task = (fn, args)
        self._go.release()

    def result(self) -> Any:
        """Wait for the task; its return value, or its exception raised here."""
        self._done.acquire()
        result, error, self._result, self._error = self._result, self._error, None, None
        if error is not None:
            raise error
        return result

    def stop(self) -> None:
        self._task = None
        self._go.release()


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may run on
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_num_threads(n: int | None = None) -> None:
    """Run the big numpy ops of the core on `n` threads; 1 (the default) splits nothing.

    With n > 1 the BLAS library is held to one thread (its own threads would spin on the
    cores ours need) and GEMMs are split by rows over our threads instead (see pmatmul);
    n = 1 gives BLAS its previous thread count back. cupy arrays are never split.

    Args:
        n: thread count, or None for every core this process may use.

    Example:
        set_num_threads(None)  # dlcli train does this on the CPU
    """
    global _threads, _blas, _blas_limits, _blas_threads, _blas_now
    n = _available_cores() if n is None else int(n)
    if n < 1:
        raise ValueError(f"thread count must be at least 1, got {n}")
    if n == _threads:
        return
    with _busy:
        for worker in _workers:
            worker.stop()
        _workers[:] = [_Worker() for _ in range(n - 1)]
    if n > 1:
        if _blas_limits is None:
            from threadpoolctl import ThreadpoolController

            _blas = ThreadpoolController().select(user_api="blas")
            _blas_threads = max([lib.num_threads for lib in _blas.lib_controllers], default=1)
            _blas_limits = _blas.limit(limits=1)
        _blas_now = 1
    elif _blas_limits is not None:
        _blas_limits.restore_original_limits()
        _blas_limits = None
    _threads = n


def get_num_threads() -> int:
    """The thread count set by set_num_threads (1 unless it was called)."""
    return _threads


def row_chunks(n_rows: int, parts: int) -> list[slice]:
    """range(n_rows) cut into `parts` contiguous slices, the first ones one row longer."""
    size, extra = divmod(n_rows, parts)
    bounds = [0]
    for i in range(parts):
        bounds.append(bounds[-1] + size + (i < extra))
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def splits(a: Any, work: int | None = None, min_work: int | None = None) -> bool:
    """True when work on numpy array `a` is worth splitting (several threads, enough work).

    `work` defaults to a's size and `min_work` to MIN_ELEMENTS.
    """
    return (
        _threads > 1 and isinstance(a, np.ndarray) and a.ndim > 0 and a.shape[0] > 1
        and (a.size if work is None else work) >= (MIN_ELEMENTS if min_work is None else min_work)
    )  # fmt: skip


def rowwise(
    fn: Callable[..., Any], *arrays: Any, work: int | None = None, min_work: int | None = None
) -> list[Any]:
    """Call fn on matching row chunks of arrays (which share their leading axis); its results.

    Without splitting (one thread, cupy, little work: see `splits`) this is [fn(*arrays)].
    fn must only write its own rows.
    Every chunk finishes before this returns; an exception in any chunk is raised here.
    """
    global _gemms_since_split
    if splits(arrays[0], work, min_work):
        _gemms_since_split = 0
    return _split(fn, arrays, work, min_work)


def _split(fn: Callable[..., Any], arrays: tuple[Any, ...], work: Any, min_work: Any) -> list[Any]:
    first = arrays[0]
    # a call from inside a chunk, or from a second thread meanwhile, runs in one piece
    if not splits(first, work, min_work) or not _busy.acquire(blocking=False):
        return [fn(*arrays)]
    try:
        _set_blas_threads(1)  # our threads take the cores now
        chunks = row_chunks(first.shape[0], min(_threads, first.shape[0]))
        workers = _workers[: len(chunks) - 1]
        for worker, rows in zip(workers, chunks[1:], strict=True):
            worker.start(fn, *(a[rows] for a in arrays))
        try:
            results = [fn(*(a[chunks[0]] for a in arrays))]
        finally:
            # every worker finishes before we return: they write into the caller's arrays
            outcomes = []
            for worker in workers:
                try:
                    outcomes.append((worker.result(), None))
                except BaseException as e:
                    outcomes.append((None, e))
        for _, error in outcomes:
            if error is not None:
                raise error
        return results + [result for result, _ in outcomes]
    finally:
        _busy.release()


def rowwise_sum(fn: Callable[..., Any], *arrays: Any) -> Any:
    """The sum over row chunks of fn(chunks...), added in chunk order (so deterministic)."""
    return rowwise_sums(lambda *chunks: (fn(*chunks),), *arrays)[0]


def rowwise_sums(fn: Callable[..., tuple[Any, ...]], *arrays: Any) -> tuple[Any, ...]:
    """rowwise_sum for an fn that returns several partial sums: each added in chunk order.

    One hand-off to the threads instead of one per sum (a hand-off costs 0.05-0.15 ms).
    """
    parts = rowwise(fn, *arrays)
    totals = tuple(parts[0])
    for p in parts[1:]:
        totals = tuple(t + q for t, q in zip(totals, p, strict=True))
    return totals


def pcopyto(dst: Any, src: Any) -> None:
    """xp.copyto(dst, src), split by rows; src must have dst's leading axis."""
    xp = get_array_module(dst)
    rowwise(lambda d, s: xp.copyto(d, s), dst, src)


def pmatmul(a: Any, b: Any) -> Any:
    """a @ b; with several threads, split by rows of a, or on BLAS's own threads for now.

    BLAS's threads spin between calls, so they start at once and beat our split on small
    GEMMs (an MLP on a small batch: 1.0 against 1.8 ms a step); but for long after a call
    their spinning takes the cores from the passes we split (a CNN: 79 against 46 ms). So a
    GEMM runs on BLAS's threads only when the last _QUIET_GEMMS GEMMs saw no split pass.
    The choice follows the sequence of calls, so a run repeats bit for bit.
    """
    global _gemms_since_split
    if a.ndim != 2 or b.ndim != 2 or not isinstance(b, np.ndarray) or _threads == 1:
        return a @ b
    macs = a.size * b.shape[1]
    _gemms_since_split += 1
    if _gemms_since_split <= _QUIET_GEMMS and splits(a, macs, MIN_MACS):
        out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
        _split(lambda a, out: np.matmul(a, b, out=out), (a, out), macs, MIN_MACS)
        return out
    if macs <= _BLAS_SERIAL_MACS or not isinstance(a, np.ndarray):
        return a @ b
    # BLAS keeps its threads until the next split pass takes them back (_split): setting
    # the count costs ~10 us, a tenth of a small GEMM, and a run of GEMMs needs it once
    _set_blas_threads(min(_threads, _blas_threads))
    return a @ b


def _set_blas_threads(n: int) -> None:
    global _blas_now
    if n != _blas_now and _blas is not None:
        for lib in _blas.lib_controllers:
            lib.set_num_threads(n)
        _blas_now = n
