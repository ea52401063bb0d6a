"""`dlcli export CHECKPOINT -o FILE`: ONNX (verified with onnxruntime), safetensors or npz."""

from __future__ import annotations

import click

from dlcli.cli import console
from dlcli.cli.options import device_option


@click.command()
@click.argument("checkpoint", metavar="CHECKPOINT")
@click.option("-o", "--output", required=True, type=click.Path(),
              help="The file to write; its suffix (.onnx, .safetensors, .npz) picks the format.")
@click.option("--format", "fmt", type=click.Choice(["onnx", "safetensors", "npz"]),
              help="The format, whatever the file's suffix.")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="ONNX: compare onnxruntime with dlcli on a batch and fail above 1e-4.")
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="Folder searched first for built-in datasets (verification inputs).")
@device_option
def export(checkpoint: str, output: str, fmt: str | None, verify: bool,
           data_dir: str | None, device: str) -> None:
    """Export the model of CHECKPOINT for use outside dlcli.

    ONNX files take raw inputs as the dataset stores them (the preprocessing is inside the
    graph) and output probabilities; safetensors and npz hold the weights under the names
    `dlcli summary` shows, with the config and preprocessing as JSON metadata.
    """
    from dlcli.export import export_checkpoint

    report = export_checkpoint(checkpoint, output, fmt, verify=verify, data_dir=data_dir,
                               device=device)
    size = report.bytes / 1e6
    console.success(f"wrote {report.path} ({report.format}, {size:.2f} MB, "
                    f"{report.parameters:,} parameters)")
    if report.verification is not None:
        console.info(f"verified with onnxruntime: {report.verification.describe()}")
    elif report.format == "onnx":
        console.warning("not verified (--no-verify)")
