"""Where this process stands in an MPI launch, read from the launcher's environment.

Nothing here imports mpi4py: `dlcli train` decides from these variables alone whether it was
started by `mpiexec -n N`, so a plain run never loads MPI.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

# (rank, size, local rank) as each launcher sets them; the first whose size is set wins
LAUNCHERS: tuple[tuple[str, str, str], ...] = (
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"),  # Open MPI
    # MPICH's hydra, Intel MPI, and Slurm's srun --mpi=pmi2
    ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"),
    ("MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_LOCAL_RANK"),  # MVAPICH2
)
# other names for the rank on this host, tried when the launcher's own is missing
LOCAL_RANK_FALLBACKS = ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID")


@dataclass(frozen=True)
class Launch:
    """This process's place in an MPI job, as its launcher's variables say."""

    rank: int
    size: int
    local_rank: int
    source: str  # the variable that gave the size, e.g. "PMI_SIZE"


def _int(environ: Mapping[str, str], name: str) -> int | None:
    try:
        return int(environ[name])
    except (KeyError, ValueError):
        return None


def detect_launch(environ: Mapping[str, str] | None = None) -> Launch | None:
    """The MPI launch this process is part of, or None when no launcher's variables are set.

    Example:
        detect_launch({"PMI_RANK": "1", "PMI_SIZE": "2"})  # Launch(1, 2, 0, "PMI_SIZE")
    """
    env = os.environ if environ is None else environ
    for rank_var, size_var, local_var in LAUNCHERS:
        size, rank = _int(env, size_var), _int(env, rank_var)
        if size is None or rank is None or size < 1 or not 0 <= rank < size:
            continue
        local = _int(env, local_var)
        for name in LOCAL_RANK_FALLBACKS:
            if local is not None:
                break
            local = _int(env, name)
        return Launch(rank, size, max(local or 0, 0), size_var)
    return None
