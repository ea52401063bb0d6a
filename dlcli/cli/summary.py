"""`dlcli summary CONFIG|CHECKPOINT`: a Keras-style table of the model, or JSON with --json."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from dlcli.cli import console
from dlcli.cli.options import config_argument, set_option

if TYPE_CHECKING:
    from dlcli.nn.sequential import Sequential


def render_summary(model: Sequential) -> None:
    """Print the Keras-style table with MACs and activation memory per sample."""
    from dlcli.nn.summary import COLUMNS, summary_lines

    rows, footer = summary_lines(model)
    console.table(COLUMNS, rows, title=f'Model: "{model.name}"', right_align=(2, 3, 4),
                  footer=footer)


@click.command()
@config_argument(metavar="CONFIG|CHECKPOINT")
@set_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def summary(config: str, overrides: tuple[str, ...], as_json: bool) -> None:
    """Show the model a CONFIG file (YAML) or a CHECKPOINT (.npz) describes: layers, shapes,
    parameters, MACs and activation memory, as Keras's model.summary() prints them."""
    from dlcli.config import load_config
    from dlcli.io.checkpoint import is_checkpoint, load_checkpoint
    from dlcli.nn.from_config import build_model
    from dlcli.nn.restore import restore_model
    from dlcli.nn.summary import summary_dict

    if is_checkpoint(config):
        if overrides:
            raise click.UsageError("--set applies to configs, not to checkpoints")
        model = restore_model(load_checkpoint(config))[1]
    else:
        model = build_model(load_config(config, overrides))
    if as_json:
        console.print_json(summary_dict(model))
    else:
        render_summary(model)
