"""`dlcli train CONFIG`: train a model into a new run directory."""

from __future__ import annotations

import importlib.util

import click

from dlcli.cli import console
from dlcli.cli.options import config_argument, set_option
from dlcli.config import load_config
from dlcli.errors import CheckpointError
from dlcli.io.checkpoint import clean_temporary_files, load_checkpoint, resolve_path
from dlcli.train.trainer import Trainer


@click.command()
@config_argument
@set_option
@click.option("--epochs", type=click.IntRange(min=1), help="Override training.epochs.")
@click.option("--seed", type=int, help="Override the seed (weights, shuffling, splits).")
@click.option("--run-dir", type=click.Path(file_okay=False),
              help="Where to write the run (default runs/<name>-<timestamp>); never overwritten.")
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="Folder searched first for built-in datasets (also $DLCLI_DATA).")
@click.option("--resume", "resume", type=click.Path(dir_okay=False),
              help="Continue from a checkpoint (weights, optimizer, schedule, random states).")
@click.option("--init-from", "init_from", type=click.Path(dir_okay=False),
              help="Start from another run's weights: every layer whose name and weight shapes "
                   "match (model.init_from in the config says more).")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def train(config: str, overrides: tuple[str, ...], epochs: int | None, seed: int | None,
          run_dir: str | None, data_dir: str | None, resume: str | None, init_from: str | None,
          quiet: bool) -> None:
    """Train the model CONFIG describes; writes history, checkpoints and metrics to a run dir."""
    extra = [*overrides]
    if epochs is not None:
        extra.append(f"training.epochs={epochs}")
    if seed is not None:
        extra.append(f"seed={seed}")
    if resume and init_from:
        raise click.UsageError("--resume continues a run, --init-from starts a new one from "
                               "another run's weights: give one of them")
    cfg = load_config(config, extra)
    ckpt = best = None
    if resume:
        ckpt = load_checkpoint(resume)
        folder = resolve_path(resume).parent
        for orphan in clean_temporary_files(folder):
            console.warning(f"removed {orphan}, left behind by a write that was killed")
        sibling = folder / "best.npz"  # the run's best, if it has one
        try:
            best = load_checkpoint(sibling) if sibling.exists() else None
        except CheckpointError as e:
            console.warning(f"{e}; resuming without it (the best epoch is tracked anew)")
    hooks = []
    if importlib.util.find_spec("matplotlib") is not None:  # dlcli[plot]: curves.png at the end
        from dlcli.runs.plots import CurvesHook

        hooks.append(CurvesHook())
    from dlcli.track import hooks_from_config

    hooks.extend(hooks_from_config(cfg))  # logging: trackers; a missing extra is exit 2 here
    reporter = console.TrainProgress(quiet=quiet)
    try:
        with console.download_progress() as progress:
            trainer = Trainer(cfg, run_dir=run_dir, reporter=reporter, data_dir=data_dir,
                              download_progress=progress, resume=ckpt, resume_best=best,
                              init_from=None if init_from is None else {"checkpoint": init_from},
                              hooks=hooks)
        result = trainer.fit()
    finally:
        reporter.close()
    if quiet:
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
