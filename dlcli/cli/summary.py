"""`dlcli summary CONFIG`: a Keras-style table of the model, or JSON with --json.

render_summary and summary_dict take any built Sequential, so other sources of a model (a
checkpoint) reuse them.
"""

from __future__ import annotations

from typing import Any

import click

from dlcli.cli import console
from dlcli.cli.options import config_argument, set_option
from dlcli.config import load_config
from dlcli.nn.from_config import build_model
from dlcli.nn.sequential import Sequential

BYTES_PER_PARAM = 4  # float32


def readable_bytes(size: float) -> str:
    """Keras's format: 1687944 -> '1.61 MB' (powers of 1024, two decimals)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} PB"


def readable_count(n: float) -> str:
    """4303872 -> '4.30 M' (powers of 1000)."""
    for unit in ("", "K", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.0f}" if unit == "" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} P"


def _shape(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join(str(d) for d in ("None", *shape)) + ")"


def summary_dict(model: Sequential) -> dict[str, Any]:
    """The summary as JSON-able data; output shapes exclude the batch axis."""
    rows = model.summary_rows()
    total = sum(r["params"] for r in rows)
    trainable = sum(r["trainable_params"] for r in rows)
    return {
        "name": model.name,
        "input_shape": list(model.input_shape),
        "layers": [
            {
                "name": r["name"],
                "type": r["type"],
                "output_shape": list(r["output_shape"]),
                "params": r["params"],
                "trainable_params": r["trainable_params"],
                "macs": r["macs"],
                "activation_bytes": r["activation_bytes"],
            }
            for r in rows
        ],
        "total_params": total,
        "trainable_params": trainable,
        "non_trainable_params": total - trainable,
        "total_macs": sum(r["macs"] for r in rows),
        "total_activation_bytes": sum(r["activation_bytes"] for r in rows),
    }


def render_summary(model: Sequential) -> None:
    """Print the Keras-style table with MACs and activation memory per sample."""
    s = summary_dict(model)
    rows = [
        [f"{r['name']} ({r['type']})", _shape(tuple(r["output_shape"])), f"{r['params']:,}",
         f"{r['macs']:,}", readable_bytes(r["activation_bytes"])]
        for r in s["layers"]
    ]
    non_trainable = s["non_trainable_params"]
    console.table(
        ["Layer (type)", "Output Shape", "Param #", "MACs / sample", "Activations / sample"],
        rows,
        title=f'Model: "{model.name}"',
        right_align=(2, 3, 4),
        footer=[
            f" Total params: {s['total_params']:,} "
            f"({readable_bytes(s['total_params'] * BYTES_PER_PARAM)})",
            f" Trainable params: {s['trainable_params']:,} "
            f"({readable_bytes(s['trainable_params'] * BYTES_PER_PARAM)})",
            f" Non-trainable params: {non_trainable:,} "
            f"({readable_bytes(non_trainable * BYTES_PER_PARAM)})",
            f" Forward MACs per sample: {s['total_macs']:,} ({readable_count(s['total_macs'])})",
            f" Activation memory per sample: {readable_bytes(s['total_activation_bytes'])}",
        ],
    )


@click.command()
@config_argument
@set_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def summary(config: str, overrides: tuple[str, ...], as_json: bool) -> None:
    """Show the model CONFIG describes: layers, output shapes, parameters, MACs, memory."""
    model = build_model(load_config(config, overrides))
    if as_json:
        console.print_json(summary_dict(model))
    else:
        render_summary(model)
