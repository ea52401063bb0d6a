"""Options shared by every command that reads a config, so `--set` means the same everywhere."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


def config_argument(func: Callable[..., Any] | None = None, *, metavar: str = "CONFIG") -> Any:
    """The CONFIG positional argument (a path; a missing file is reported by load_config)."""
    if func is None:
        return lambda f: click.argument("config", metavar=metavar)(f)
    return click.argument("config", metavar=metavar)(func)


def set_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """`--set KEY=VALUE`, repeatable, collected into a tuple named `overrides`."""
    return click.option(
        "--set", "overrides", multiple=True, metavar="KEY=VALUE",
        help="Override a config value before validation, e.g. --set optimizer.learning_rate=0.01"
             " or --set model.layers[7].rate=0.5 (values are YAML). Repeatable.",
    )(func)


def device_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """`--device cpu|gpu`: where a checkpoint runs, whatever device it was trained on."""
    return click.option(
        "--device", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True,
        help="Run on the CPU (numpy) or a GPU (cupy: the dlcli[gpu] extra), whatever device "
             "the checkpoint was trained on.",
    )(func)
