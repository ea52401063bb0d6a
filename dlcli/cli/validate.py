"""`dlcli validate CONFIG`: check a config and its model's shapes without touching any data."""

from __future__ import annotations

import os

import click

from dlcli.cli import console
from dlcli.cli.options import config_argument, set_option


@click.command()
@config_argument
@set_option
def validate(config: str, overrides: tuple[str, ...]) -> None:
    """Check CONFIG: every key, every value and every layer's shapes."""
    from dlcli.config import load_config
    from dlcli.nn.from_config import model_issues, plan_model

    # shape errors come with the schema's; the model is planned, never built, so a model too
    # large for memory is refused without allocating it
    cfg = load_config(config, overrides, model_check=model_issues)
    plan = plan_model(cfg.model, cfg.data.batch_size)
    n = len(plan.layers)
    console.success(
        f"{os.path.basename(config)} is valid: {n} layer{'s' if n != 1 else ''}, "
        f"{plan.count_params():,} parameters"
    )
