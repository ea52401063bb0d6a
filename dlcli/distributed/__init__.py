"""Training on several processes: data parallel over MPI (the `mpi` extra).

env.py reads the launcher's variables (no MPI import); comm.py is the single-process
Communicator the trainer always talks to; mpi.py is the same interface over MPI ranks, loaded
only when `dlcli train` runs under `mpiexec -n N` (N > 1) or with --distributed.
"""

from __future__ import annotations

from dlcli.distributed.comm import Communicator
from dlcli.distributed.env import Launch, detect_launch

__all__ = ["Communicator", "Launch", "communicator_for", "detect_launch"]


def communicator_for(distributed: bool | None,
                     launch: Launch | None = None) -> tuple[Communicator, str | None]:
    """The communicator `dlcli train` trains with, and a note for the user (or None).

    Args:
        distributed: None: MPI when a launcher started more than one process; True: the
            same, with a note when there is only one; False: one process whatever the launch.
        launch: the launch detected from the environment (detect_launch() when None).

    Raises:
        MissingExtraError: launched by mpiexec with N > 1 but mpi4py is not installed.
    """
    launch = detect_launch() if launch is None else launch
    if distributed is False or launch is None or launch.size == 1:
        note = None
        if distributed:
            note = ("--distributed: not started by mpiexec with more than one process, so "
                    "training runs in this one (start it as: mpiexec -n N dlcli train ...)")
        return Communicator(), note
    from dlcli.distributed.mpi import MpiCommunicator

    return MpiCommunicator(), None
