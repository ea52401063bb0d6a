"""`dlcli validate CONFIG`: check a config and build its model without touching any data."""

from __future__ import annotations

import os

import click

from dlcli.cli import console
from dlcli.cli.options import config_argument, set_option
from dlcli.config import load_config
from dlcli.nn.from_config import build_model


@click.command()
@config_argument
@set_option
def validate(config: str, overrides: tuple[str, ...]) -> None:
    """Check CONFIG: every key, every value and every layer's shapes."""
    cfg = load_config(config, overrides)
    model = build_model(cfg)
    n = len(model.layers)
    console.success(
        f"{os.path.basename(config)} is valid: {n} layer{'s' if n != 1 else ''}, "
        f"{model.count_params():,} parameters"
    )
