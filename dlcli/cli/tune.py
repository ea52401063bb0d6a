"""`dlcli tune CONFIG --space SPACE`: a hyperparameter sweep on Ray Tune."""

from __future__ import annotations

import math

import click

from dlcli.cli import console
from dlcli.cli.options import config_argument, set_option
from dlcli.errors import DlcliError


@click.command()
@config_argument
@click.option("--space", "space", required=True, type=click.Path(dir_okay=False),
              help="The search space: dotted config keys with Tune's distributions, e.g. "
                   "`optimizer.learning_rate: {loguniform: [1.0e-4, 1.0e-1]}`.")
@click.option("--trials", type=click.IntRange(min=1),
              help="Samples of the space; each covers every grid point (default: 1 for a "
                   "grid-only space, else 10).")
@click.option("--scheduler", type=click.Choice(["asha", "fifo"]), default="asha",
              show_default=True, help="asha stops weak trials early; fifo runs every trial "
                                      "to the end.")
@click.option("--metric", metavar="NAME",
              help="The logged name to optimize (default: val_loss with validation data, else "
                   "loss).")
@click.option("--mode", type=click.Choice(["min", "max"]),
              help="Whether the metric should go down or up (default: from its name).")
@click.option("--address", metavar="ADDR",
              help="Join the Ray cluster at ADDR (e.g. ray://head:10001 or auto) instead of "
                   "starting Ray on this machine.")
@click.option("--max-concurrent", "max_concurrent", type=click.IntRange(min=1),
              help="Trials run at once (default: one per core); the cores are shared among "
                   "them.")
@set_option
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="Folder searched first for built-in datasets (also $DLCLI_DATA).")
def tune(config: str, space: str, trials: int | None, scheduler: str, metric: str | None,
         mode: str | None, address: str | None, max_concurrent: int | None,
         overrides: tuple[str, ...], data_dir: str | None) -> None:
    """Sweep hyperparameters on Ray Tune: one run per trial, the best config as best.yaml."""
    from dlcli.tune.sweep import SweepOptions, run_sweep

    options = SweepOptions(trials=trials, scheduler=scheduler, metric=metric, mode=mode,
                           address=address, max_concurrent=max_concurrent, data_dir=data_dir)
    result = run_sweep(config, space, options, overrides, on_trial=console.info)
    rows = []
    for t in result.trials:
        best = "" if t.best is None or not math.isfinite(t.best) else f"{t.best:.4f}"
        mark = " *" if t is result.best else ""
        rows.append([t.name + mark, *(_value(t.values.get(k)) for k in result.keys),
                     best, str(t.epochs), t.status])
    footer = [f"all trials: {result.sweep_dir / 'trials.csv'}"]
    if result.best is not None:
        footer.insert(0, f"* best: {result.best.name} ({result.metric} {result.best.best:.4f});"
                         f" config in {result.sweep_dir / 'best.yaml'}")
    n = len(result.keys)
    console.table(["trial", *result.keys, f"best {result.metric}", "epochs", "status"], rows,
                  title=f"Sweep: {result.sweep_dir} ({len(result.trials)} trials, "
                        f"{result.seconds:.0f}s; {result.metric}, {result.mode})",
                  right_align=[*range(1, n + 3)], footer=footer)
    for t in result.trials:
        if t.error:
            console.warning(f"{t.name}: {t.error}")
    if result.best is None:
        raise DlcliError(result.failure())


def _value(value: object) -> str:
    """A sampled value, short: floats to 4 significant digits."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
