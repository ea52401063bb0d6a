"""`dlcli plot RUN...`: the curves of runs overlaid, or `--filters` a model's first layers."""

from __future__ import annotations

from pathlib import Path

import click

from dlcli.cli import console


@click.command()
@click.argument("runs", nargs=-1, metavar="[RUN]...")
@click.option("--metric", metavar="NAME",
              help="One quantity to draw, e.g. val_accuracy (a train quantity brings its "
                   "validation twin); default: the loss and the first metric.")
@click.option("-o", "--output", default="plot.png", show_default=True,
              type=click.Path(dir_okay=False),
              help="The picture to write (png; .pdf and .svg work too).")
@click.option("--filters", metavar="RUN_OR_CHECKPOINT",
              help="Draw the first Conv2D layer's kernels (and the first Dense layer's weights "
                   "on an image input) of a run's best checkpoint, or of a checkpoint.")
def plot(runs: tuple[str, ...], metric: str | None, output: str, filters: str | None) -> None:
    """Compare runs: their training curves overlaid in one picture, labelled by run name."""
    from dlcli.runs.plots import plot_curves, plot_filters

    if filters is not None:
        if runs or metric:
            raise click.UsageError("--filters draws one run's weights: give it no RUN "
                                   "arguments and no --metric")
        path = plot_filters(Path(filters), Path(output))
        console.success(f"filters of {filters} written to {path}")
        return
    if not runs:
        raise click.UsageError("give one or more run directories (or --filters RUN)")
    path = plot_curves([Path(r) for r in runs], metric, Path(output))
    what = "curves" if len(runs) == 1 else f"curves of {len(runs)} runs"
    console.success(f"{what} written to {path}")
