"""The trainer's view of the processes it trains with: `Communicator` is one process.

The trainer calls the same methods whether it runs alone or as one of N MPI ranks
(dlcli.distributed.mpi); here each is the identity or a no-op, so a single-process run does
exactly what it did before there were ranks: no gradient is packed, no sum is copied.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, TypeVar

T = TypeVar("T")


class Communicator:
    """One process: rank 0 of 1. dlcli.distributed.mpi.MpiCommunicator is N of them.

    Example:
        trainer = Trainer(cfg, comm=Communicator())  # what Trainer(cfg) does
    """

    rank = 0
    size = 1
    local_rank = 0  # the rank among the processes on this host (its GPU's number)
    local_size = 1

    @property
    def is_root(self) -> bool:
        """Rank 0: the one that writes the run directory and prints."""
        return self.rank == 0

    # -- set-up -----------------------------------------------------------------------------
    def cpu_threads(self) -> int | None:
        """The core's thread count for this process (None: every core it may use)."""
        return None

    def use_device(self, xp: ModuleType) -> list[str]:
        """Pick this process's GPU when xp is cupy; train.log lines saying what was chosen."""
        return []

    def notes(self, model: Any, batch_size: int) -> list[str]:
        """train.log lines about the ranks (none for one process)."""
        return []

    def attach(self, model: Any) -> None:
        """Give synchronized BatchNorm layers the all-reduce they need (none here)."""

    def sharder(self, n: int, batch_size: int) -> Callable[[int, int], tuple[int, int]] | None:
        """The function that cuts a global batch [lo, hi) down to this rank's share; None when
        a rank takes it whole."""
        return None

    def agree(self, fn: Callable[[], T]) -> T:
        """fn() on every rank; when it raises a DlcliError on any rank, every rank raises one
        (rank 0 the first of them). fn must make no collective call of its own."""
        return fn()

    def on_root(self, fn: Callable[[], T]) -> T:
        """fn() run on rank 0 alone, its result (or its DlcliError) given to every rank."""
        return fn()

    def bcast(self, obj: T) -> T:
        """Rank 0's `obj` on every rank."""
        return obj

    def broadcast_weights(self, model: Any) -> None:
        """Every rank starts from rank 0's weights."""

    # -- each step ----------------------------------------------------------------------------
    def loss_seed(self, loss: Any, k: int, total: int) -> Any:
        """The gradient to start backward from for a loss averaged over this rank's k of the
        global batch's `total` samples (None: 1, the gradient of a whole batch's mean)."""
        return None

    def reduce_gradients(self, params: Sequence[Any], stop: int, read: bool) -> tuple[int, bool]:
        """Sum every parameter's gradient over the ranks, in one call, and agree on two flags:
        the signal to stop for (0: none) and whether to read the loss sums now.
        One process: the gradients are left as they are and the flags come back unchanged."""
        return stop, read

    def stop_before_batch(self, requested: bool) -> bool:
        """Whether to stop before the next batch: the request itself for one process; under MPI
        what the last all-reduce agreed, so every rank stops before the same batch."""
        return requested

    def agree_stop(self, stop: int) -> int:
        """The signal to stop for that some rank got (0: none), the same on every rank."""
        return stop

    # -- sums ---------------------------------------------------------------------------------
    def read_loss(self, sums: Any, epoch: int, upto: int, seen: int) -> tuple[float, float, int]:
        """(data-loss sum, regularization sum, samples) of the epoch so far over every rank;
        raises (on every rank alike) when a loss was not finite."""
        return (*sums.read(epoch, upto), seen)

    def reduce_epoch(self, sums: Any, metrics: Any, epoch: int, upto: int, seen: int,
                     begin: tuple[int, int]) -> tuple[float, float, int]:
        """As read_loss, and leave `metrics` holding every rank's sums (and, for gathered metrics,
        every output in the epoch's order). begin = (first batch, samples seen before it)."""
        return (*sums.read(epoch, upto), seen)

    def abort(self, exit_code: int) -> None:
        """End every rank now (an error on one rank would leave the others waiting)."""
