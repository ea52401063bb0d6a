"""`dlcli train CONFIG`: train a model into a new run directory."""

from __future__ import annotations

import importlib.util
import sys
import traceback
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import click

from dlcli.cli import console
from dlcli.cli.options import config_argument, set_option
from dlcli.errors import CheckpointError, DlcliError


@click.command()
@config_argument
@set_option
@click.option("--epochs", type=click.IntRange(min=1), help="Override training.epochs.")
@click.option("--seed", type=int, help="Override the seed (weights, shuffling, splits).")
@click.option("--run-dir", type=click.Path(file_okay=False),
              help="Where to write the run (default runs/<name>-<timestamp>); never overwritten.")
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="Folder searched first for built-in datasets (also $DLCLI_DATA).")
@click.option("--resume", "resume", type=click.Path(),
              help="Continue from a checkpoint (weights, optimizer, schedule, random states), "
                   "or from a run directory's checkpoints/last.")
@click.option("--init-from", "init_from", type=click.Path(),
              help="Start from another run's weights: every layer whose name and weight shapes "
                   "match (model.init_from in the config says more).")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@click.option("--distributed/--no-distributed", default=None,
              help="Train as one rank of an MPI job (mpiexec -n N dlcli train CONFIG; the "
                   "dlcli[mpi] extra), which is detected without this flag; --no-distributed "
                   "trains alone even under mpiexec.")
def train(config: str, overrides: tuple[str, ...], epochs: int | None, seed: int | None,
          run_dir: str | None, data_dir: str | None, resume: str | None, init_from: str | None,
          quiet: bool, distributed: bool | None) -> None:
    """Train the model CONFIG describes; writes history, checkpoints and metrics to a run dir."""
    from dlcli.distributed import communicator_for, detect_launch
    from dlcli.train.trainer import Trainer

    extra = [*overrides]
    if epochs is not None:
        extra.append(f"training.epochs={epochs}")
    if seed is not None:
        extra.append(f"seed={seed}")
    if resume and init_from:
        raise click.UsageError("--resume continues a run, --init-from starts a new one from "
                               "another run's weights: give one of them")
    launch = None if distributed is False else detect_launch()
    try:
        comm, note = communicator_for(distributed, launch)
    except DlcliError as err:  # no mpi4py: every rank has the same error, rank 0 says it
        if launch is not None and launch.rank > 0:
            sys.exit(err.exit_code)
        raise
    if note:
        console.warning(note)
    root = comm.is_root  # under MPI rank 0 alone prints and writes
    try:
        cfg, ckpt, best, hooks = comm.agree(lambda: _inputs(config, extra, resume, root))
        reporter = console.TrainProgress(quiet=quiet or not root)
        try:
            with console.download_progress() if root else nullcontext() as progress:
                trainer = Trainer(cfg, run_dir=run_dir, reporter=reporter, data_dir=data_dir,
                                  download_progress=progress, resume=ckpt, resume_best=best,
                                  init_from=None if init_from is None else {"checkpoint":
                                                                            init_from},
                                  hooks=hooks, comm=comm)
            result = trainer.fit()
        finally:
            reporter.close()
    except BaseException as err:
        _end_rank(comm, err)
        raise
    if quiet or not root:
        return
    best = result.run_dir / "checkpoints" / "best.npz"
    console.success(f"run saved in {result.run_dir}")
    if (result.run_dir / "curves.png").exists():
        console.info(f"curves: {result.run_dir / 'curves.png'}")
    if result.best_epoch is not None:
        console.info(f"best checkpoint: {best} (epoch {result.best_epoch}, "
                     f"{result.monitor} {result.best_value:.4f})")
    if result.test_metrics:
        console.kv_table("test metrics", result.test_metrics)


def _inputs(config: str, extra: list[str], resume: str | None,
            root: bool) -> tuple[Any, Any, Any, list[Any]]:
    """(config, checkpoint to resume, its run's best checkpoint, hooks): what every rank reads
    before training; rank 0 alone tidies the checkpoint folder and makes the hooks."""
    from dlcli.config import load_config
    from dlcli.io.checkpoint import clean_temporary_files, load_checkpoint, resolve_path

    cfg = load_config(config, extra)
    ckpt = best = None
    if resume:
        resume = _last_of_run(resume)
        ckpt = load_checkpoint(resume)
        folder = resolve_path(resume).parent
        for orphan in clean_temporary_files(folder) if root else ():
            console.warning(f"removed {orphan}, left behind by a write that was killed")
        sibling = folder / "best.npz"  # the run's best, if it has one
        try:
            best = load_checkpoint(sibling) if sibling.exists() else None
        except CheckpointError as e:
            if root:
                console.warning(f"{e}; resuming without it (the best epoch is tracked anew)")
    hooks = []
    if root and importlib.util.find_spec("matplotlib") is not None:  # dlcli[plot]: curves.png
        from dlcli.runs.plots import CurvesHook

        hooks.append(CurvesHook())
    if root:
        from dlcli.track import hooks_from_config

        hooks.extend(hooks_from_config(cfg))  # logging: trackers; a missing extra is exit 2 here
    return cfg, ckpt, best, hooks


def _last_of_run(path: str) -> str:
    """A run directory (or its checkpoints folder) given to --resume means its last checkpoint;
    anything else is left to load_checkpoint, which says what is wrong with it."""
    from dlcli.io.checkpoint import checkpoint_in

    last = checkpoint_in(path, "checkpoints/last", "last") if Path(path).is_dir() else None
    return path if last is None else str(Path(path) / last)


def _end_rank(comm: Any, err: BaseException) -> None:
    """Under MPI, end this rank after `err`. An error every rank raised at the same point
    (a stop signal, one that rank 0 broadcast) ends each alike and rank 0 alone reports it;
    any other may be this rank's alone while the others wait in a collective call, so it is
    reported here (naming the rank) and MPI_Abort ends them all. One process: nothing."""
    from dlcli.train.trainer import Interrupted

    if comm.size == 1 or isinstance(err, SystemExit):
        return
    code = getattr(err, "exit_code", 130 if isinstance(err, KeyboardInterrupt) else 1)
    if isinstance(err, Interrupted) or getattr(err, "every_rank", False):
        if not comm.is_root:
            sys.exit(code)
        return
    ctx = click.get_current_context(silent=True)
    debug = bool(ctx and (ctx.find_root().obj or {}).get("debug"))
    prefix = "" if comm.is_root else f"rank {comm.rank}: "
    if isinstance(err, DlcliError) and not debug:
        console.error(prefix + str(err))
    elif isinstance(err, KeyboardInterrupt) and not debug:
        console.error(prefix + "interrupted")
    else:
        console.error(prefix + f"{type(err).__name__}: {err}")
        traceback.print_exception(err)
    comm.abort(code)
